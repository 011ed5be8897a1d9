// Swagger UI over the API's OpenAPI document, both served by Envoy at this
// origin: "Try it out" calls the same origin with the bearer token given
// under Authorize. Nothing is fetched from anywhere else (no validator badge).

interface SwaggerUIOptions {
  url: string;
  dom_id: string;
  validatorUrl: null;
  deepLinking: boolean;
  persistAuthorization: boolean;
  tryItOutEnabled: boolean;
}

declare const SwaggerUIBundle: (options: SwaggerUIOptions) => unknown;

SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  validatorUrl: null,
  deepLinking: true,
  persistAuthorization: true,
  tryItOutEnabled: false,
});
