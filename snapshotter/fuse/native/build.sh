#!/usr/bin/env bash
# Builds fuse-native's addon with augur's one change (caller-context.patch):
# each operation records the pid and uid of the process that made it
# (fuse_get_context() on the FUSE thread), and `fuse_native_caller()` returns
# them while the operation's JS handler runs. Access traces attribute reads to
# containers by that pid (snapshotter/trace/). The source is fuse-native's own,
# from the pinned npm package; layer-fuse.ts loads this build in place of its
# prebuilt binary (FUSE_NATIVE_PREBUILD, a node-gyp-build setting).
set -euo pipefail
cd "$(dirname "$0")"
src=$(node -e 'console.log(require("path").dirname(require.resolve("fuse-native/package.json")))')
mkdir -p src
cp "$src/fuse-native.c" src/fuse-native.c
patch -s -p1 -d src < caller-context.patch
exec node-gyp rebuild --nodedir="${npm_config_nodedir:-/usr}"
