#!/usr/bin/env bash
# npm run demo [-- --keep]: install what is missing, then run the end-to-end demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
node dist/scripts/demo.js "$@"
