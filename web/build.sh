#!/usr/bin/env bash
# Build the browser client and /docs from scratch into web/dist (or the folder given):
#   npm ci && ./build.sh          # or: npm run build
# 1. TypeScript for the API (src/gen, not checked in) from the project's
#    descriptor set, which scripts/generate_proto.py compiles from proto/ with
#    the google/api and google/rpc imports included (tests keep it fresh);
# 2. type-check; 3. bundle with esbuild into index.html, app.js and app.css;
# 4. /docs: Swagger UI from swagger-ui-dist, its start-up script, and the
#    OpenAPI document (generated/openapi.json, also made by generate_proto.py).
# The same sources and lockfile give byte-identical files (tests/test_web_build.py).
set -euo pipefail
out=${1:-$(dirname "$0")/dist}
rm -rf "$out"
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
bin=node_modules/.bin

rm -rf src/gen
"$bin/buf" generate ../generated/atomchat/v1/atomchat_descriptor.binpb \
  --path atomchat/v1 --template buf.gen.yaml
"$bin/tsc" -p tsconfig.json

bundle=(--bundle --minify --format=iife --target=es2022 --log-level=warning)
"$bin/esbuild" src/app.tsx "${bundle[@]}" --jsx=automatic --jsx-import-source=preact \
  --outfile="$out/app.js"
"$bin/esbuild" src/app.css --minify --log-level=warning --outfile="$out/app.css"
cp src/index.html "$out/index.html"

"$bin/esbuild" src/docs.ts "${bundle[@]}" --outfile="$out/docs.js"
cp src/docs.html "$out/docs.html"
cp node_modules/swagger-ui-dist/swagger-ui-bundle.js node_modules/swagger-ui-dist/swagger-ui.css "$out/"
cp ../generated/openapi.json "$out/openapi.json"
