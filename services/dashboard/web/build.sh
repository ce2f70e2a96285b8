#!/bin/sh
# The page's chart libraries: exactly package-lock.json's versions from the npm registry, then
# their standalone ES modules copied into vendor/, which the dashboard serves itself (no CDN,
# no bundler). Run by `make dashboard-web` and by the Dockerfile's node stage.
set -eu
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
mkdir -p vendor
cp node_modules/lightweight-charts/dist/lightweight-charts.standalone.production.mjs vendor/lightweight-charts.mjs
cp node_modules/uplot/dist/uPlot.esm.js node_modules/uplot/dist/uPlot.min.css vendor/
