#!/usr/bin/env bash
# Installs a built augur checkout on this host: the program under
# <prefix>/lib/augur, `augur` on PATH at <prefix>/bin/augur, the systemd unit
# <unit-dir>/augur.service and, only if there is none yet, the commented default
# config <config-dir>/config.toml. Run through `scripts/install.sh --system`,
# which installs the Debian packages and builds first.
#   --prefix DIR      default /usr/local
#   --unit-dir DIR    default /etc/systemd/system
#   --config-dir DIR  default /etc/augur
#   --uninstall       remove program, wrapper and unit; keep the config and the
#                     state under /var/lib/augur
set -euo pipefail
src="$(cd "$(dirname "$0")/../.." && pwd)"
prefix=/usr/local unit_dir=/etc/systemd/system config_dir=/etc/augur uninstall=false
while (($#)); do
  case "$1" in
    --system) ;;
    --prefix) prefix="${2:?--prefix needs a directory}"; shift ;;
    --unit-dir) unit_dir="${2:?--unit-dir needs a directory}"; shift ;;
    --config-dir) config_dir="${2:?--config-dir needs a directory}"; shift ;;
    --uninstall) uninstall=true ;;
    *) echo "install: unknown option $1 (known: --system, --prefix, --unit-dir, --config-dir, --uninstall)" >&2; exit 2 ;;
  esac
  shift
done
lib="$prefix/lib/augur" bin="$prefix/bin/augur" unit="$unit_dir/augur.service" config="$config_dir/config.toml"

# systemctl only where systemd runs this machine (not in containers or chroots).
systemd_up() { [ -d /run/systemd/system ] && command -v systemctl >/dev/null; }

if $uninstall; then
  if systemd_up && [ -f "$unit" ]; then systemctl disable --now augur.service || true; fi
  rm -rf "$lib" "$lib.new" "$lib.old"
  rm -f "$bin" "$unit"
  systemd_up && systemctl daemon-reload
  echo "install: removed $lib, $bin and $unit (kept $config and augur's state directory)"
  exit 0
fi

[ -f "$src/dist/snapshotter/cli/main.js" ] || { echo "install: $src is not built (run scripts/install.sh first)" >&2; exit 1; }
node="$(command -v node)"

# Stage the new version beside the old one and swap it in with renames, so a
# failed copy never leaves a half-installed program behind the running unit.
rm -rf "$lib.new" "$lib.old"
mkdir -p "$lib.new/snapshotter/layer/zran/build/Release" "$lib.new/snapshotter/fuse/native/build/Release" "$prefix/bin" "$unit_dir" "$config_dir"
cp -a "$src/package.json" "$src/package-lock.json" "$src/README.md" "$src/dist" "$src/proto" "$src/node_modules" "$lib.new/"
# The native addons are found where the checkout keeps them (zran.ts, layer-fuse.ts).
cp -a "$src/snapshotter/layer/zran/build/Release/zran.node" "$lib.new/snapshotter/layer/zran/build/Release/"
cp -a "$src/snapshotter/fuse/native/build/Release/fuse.node" "$lib.new/snapshotter/fuse/native/build/Release/"
# Tests, benchmarks and compilers stay behind; nothing is downloaded or rebuilt.
(cd "$lib.new" && npm prune --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
[ -d "$lib" ] && mv "$lib" "$lib.old"
mv "$lib.new" "$lib"
rm -rf "$lib.old"

printf '#!/bin/sh\nexec %s %s/dist/snapshotter/cli/main.js "$@"\n' "$node" "$lib" > "$bin.new"
chmod 0755 "$bin.new"
mv "$bin.new" "$bin"

sed -e "s|@NODE@|$node|g" -e "s|@LIB@|$lib|g" -e "s|@CONFIG@|$config|g" "$src/scripts/host/augur.service" > "$unit.new"
mv "$unit.new" "$unit"

if [ -e "$config" ]; then
  echo "install: kept $config"
else
  install -m 0644 "$src/scripts/host/config.toml" "$config"
fi

systemd_up && systemctl daemon-reload
echo "install: augur $("$bin" --version | sed 's/^augur //') in $lib, $bin, $unit, $config"
systemd_up || echo "install: systemd is not running here; enable the unit on the host with: systemctl enable --now augur"
