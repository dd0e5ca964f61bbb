#!/usr/bin/env bash
# The whole test suite: installs what is missing, then type-checks, lints and runs
# every vitest test (unit tests, then system tests that start real containerd,
# registries and mounts; they need root). Ends with one line: N passed, N failed.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! bash scripts/install.sh; then
  echo "install failed"
  echo "0 passed, 1 failed"
  exit 1
fi

passed=0
failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    passed=$((passed + 1))
    echo "check $name: ok"
  else
    failed=$((failed + 1))
    echo "check $name: FAILED"
  fi
}
check typecheck npm run -s typecheck
check lint npm run -s lint

report=$(mktemp /tmp/augur-vitest-XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
counts=$(node -e '
  const fs = require("node:fs");
  try {
    const r = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
    // A file that fails to load has no tests; count it as a failure.
    const broken = r.testResults.filter((f) => f.status === "failed" && f.assertionResults.length === 0).length;
    console.log(r.numPassedTests, r.numFailedTests + broken);
  } catch { console.log(0, 1); }
' "$report")
rm -f "$report"
read -r vp vf <<<"$counts"
passed=$((passed + vp))
failed=$((failed + vf))
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
