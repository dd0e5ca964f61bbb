#!/usr/bin/env bash
# The whole test suite: installs what is missing, then type-checks, lints and runs
# every vitest test (unit tests, then system tests that start real containerd,
# registries and mounts; they need root). Ends with one line: N passed, N failed,
# where N passed counts tests, and N failed counts failed tests, files that failed
# without a failed test (a hook that threw, a file that did not load), a vitest
# exit code no test explains, and failed checks (typecheck, lint, reported above it).
# Skipped tests are listed by name. containerd's Go snapshotter suite
# (scripts/go-suite.sh) and the Node 22/24 matrix (scripts/node-matrix.sh;
# AUGUR_NODE_MATRIX=off leaves it out) run after vitest, and their cases count
# in the same line.
set -uo pipefail
cd "$(dirname "$0")/.."

if ! bash scripts/install.sh; then
  echo "install failed"
  echo "0 passed, 1 failed"
  exit 1
fi

checks_failed=0
check() {
  local name=$1
  shift
  if "$@"; then
    echo "check $name: ok"
  else
    checks_failed=$((checks_failed + 1))
    echo "check $name: FAILED"
  fi
}
check typecheck npm run -s typecheck
check lint npm run -s lint

report=$(mktemp /tmp/augur-vitest-XXXXXX.json)
npx vitest run --reporter=default --reporter=json --outputFile="$report" "$@"
vitest_rc=$?
summary=$(node dist/scripts/test-report.js "$report")
rm -f "$report"
echo "$summary" | sed '$d'
read -r passed failed skipped <<<"$(echo "$summary" | tail -n 1)"
# vitest failing for a reason no test or file shows (a crash, an unhandled error) is a failure too
if [ "$vitest_rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "vitest exited $vitest_rc with no failed test or file to show for it: counted as one failure"
  failed=1
fi

# Runs a suite script whose last line is "NAME: N passed, N failed, N skipped"
# and adds its counts; no such line counts as one failure.
count_suite() {
  local name=$1 out p f s
  shift
  out=$("$@" 2>&1)
  echo "$out"
  read -r p f s <<<"$(echo "$out" | tail -n 1 |
    sed -E "s/^$name: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped\$/\\1 \\2 \\3/")"
  if ! [[ "$p" =~ ^[0-9]+$ && "$f" =~ ^[0-9]+$ && "$s" =~ ^[0-9]+$ ]]; then
    echo "$name: no result line: counted as one failure"
    p=0 f=1 s=0
  fi
  passed=$((passed + p))
  failed=$((failed + f))
  skipped=$((skipped + s))
}

# (both skipped when arguments select particular vitest files)
if [ "$#" -eq 0 ]; then
  # containerd's own Go snapshotter suite against augur
  count_suite go-suite bash scripts/go-suite.sh
  # the other supported Node majors (22, 24): unit tests and one system test each
  [ "${AUGUR_NODE_MATRIX:-on}" != off ] && count_suite node-matrix bash scripts/node-matrix.sh
fi
echo "tests: $passed passed, $failed failed, $skipped skipped; checks (typecheck, lint): $checks_failed failed"
# the last line counts tests; a failed check counts as a failure so CI cannot pass without it
echo "$passed passed, $((failed + checks_failed)) failed"
[ "$((failed + checks_failed))" -eq 0 ]
