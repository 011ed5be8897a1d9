"use strict";(()=>{SwaggerUIBundle({url:"/openapi.json",dom_id:"#swagger-ui",validatorUrl:null,deepLinking:!0,persistAuthorization:!0,tryItOutEnabled:!1});})();
