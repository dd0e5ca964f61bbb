#!/usr/bin/env bash
# Compiles only the benchmark scripts (and what they import) into dist/, without
# touching the rest of the build.
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc --target ES2022 --module NodeNext --moduleResolution NodeNext --lib ES2023 --types node --strict \
  --skipLibCheck --esModuleInterop --sourceMap --outDir dist --rootDir . \
  scripts/images/build-debian-images.ts $(ls scripts/bench/*.ts 2>/dev/null)
