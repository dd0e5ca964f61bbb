#!/usr/bin/env bash
# npm run bench -- [options]: compiles the benchmark scripts, then runs the
# lazy-pull benchmark (scripts/bench/lazy-pull.ts; --help-style options there).
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/bench/compile.sh
exec node dist/scripts/bench/lazy-pull.js "$@"
