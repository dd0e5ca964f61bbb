#!/usr/bin/env bash
# containerd's own snapshotter suite (snapshots/testsuite, Go) against augur:
# builds test/go/snapshotter-suite in GOPATH mode from Debian's packaged
# containerd sources, runs it (root: the suite mounts overlays), lists each case,
# and ends with one line: "go-suite: N passed, N failed, N skipped".
# A build failure or a test binary that exits non-zero with no failed case to show
# for it counts as one failure. Needs the build (dist/) done first.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work=$(mktemp -d /tmp/augur-go-suite-XXXXXX)
trap 'rm -rf "$work"' EXIT

if ! (cd test/go/snapshotter-suite &&
  GO111MODULE=off GOPATH=/usr/share/gocode GOCACHE="${GOCACHE:-/tmp/augur-gocache}" GOFLAGS= \
    go test -c -o "$work/suite.test" . >"$work/build.log" 2>&1); then
  cat "$work/build.log"
  echo "go-suite: build failed"
  echo "go-suite: 0 passed, 1 failed, 0 skipped"
  exit 1
fi

# -test.parallel: the suite's cases are independent roots, each with its own augur
AUGUR_MAIN="$root/dist/snapshotter/cli/main.js" "$work/suite.test" -test.v -test.parallel 4 \
  -test.timeout 15m >"$work/run.log" 2>&1
rc=$?
grep -E '^\s*--- (PASS|FAIL|SKIP): TestAugur/' "$work/run.log" | sed 's/^\s*//'
passed=$(grep -cE '^\s*--- PASS: TestAugur/' "$work/run.log")
failed=$(grep -cE '^\s*--- FAIL: TestAugur/' "$work/run.log")
skipped=$(grep -cE '^\s*--- SKIP: TestAugur/' "$work/run.log")
if [ "$failed" -gt 0 ] || [ "$rc" -ne 0 ]; then
  # the failing cases' own output (and augur's logs are under the suite's temp roots)
  grep -vE '^\s*--- PASS|^=== (RUN|PAUSE|CONT)' "$work/run.log" | tail -n 80
fi
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
  echo "go-suite: the test binary exited $rc with no failed case to show for it: counted as one failure"
  failed=1
fi
echo "go-suite: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
