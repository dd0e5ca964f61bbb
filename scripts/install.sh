#!/usr/bin/env bash
# Installs what augur needs on a Debian machine (root): Debian packages, npm
# dependencies (native addons build against Node's headers in /usr), and the build.
# Safe to run again: it only installs what is missing.
#   scripts/install.sh --system [--prefix DIR] [--unit-dir DIR] [--config-dir DIR]
# then installs the build for this host: `augur` on PATH, augur.service and
# /etc/augur/config.toml (scripts/host/install-host.sh); --uninstall removes them.
set -euo pipefail
cd "$(dirname "$0")/.."
case " $* " in
  *" --uninstall "*) exec bash scripts/host/install-host.sh "$@" ;;
esac

# containerd + runc run containers; docker-registry and skopeo serve and push test
# images; stargz-snapshotter brings ctr-remote; libfuse2/fuse3 are fuse-native's
# runtime and fusermount; busybox-static is the base of the demo and test images;
# zlib1g-dev builds the gzip random-access addon (snapshotter/layer/zran); the Go
# toolchain with stargz-snapshotter's sources builds its reference eStargz writer
# for the layer tests; attr (getfattr, setfattr) reads and writes overlay xattrs for the FUSE
# layer tests and native copies; curl queries the HTTP API in tests; containerd's
# Go sources bring its own snapshotter suite (snapshots/testsuite, scripts/go-suite.sh).
PKGS=(containerd runc docker-registry skopeo stargz-snapshotter busybox-static libfuse2 fuse3 iproute2 zstd ca-certificates
  zlib1g-dev golang-go golang-github-containerd-stargz-snapshotter-dev attr curl golang-github-containerd-containerd-dev)
# debootstrap and attr (getfattr) build the benchmark images from Debian packages
# (scripts/images/debian-image.ts).
PKGS+=(debootstrap attr)
# patch applies augur's change to fuse-native's addon source (snapshotter/fuse/native/build.sh).
PKGS+=(patch)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ]; then
    echo "install: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
    exit 1
  fi
  echo "install: apt-get install ${missing[*]}"
  apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

# Native addons (better-sqlite3, fuse-native, zstd-napi) cannot download headers here.
export npm_config_nodedir=/usr
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "install: npm ci"
  npm ci --no-audit --no-fund
fi
npm run -s build
if (($#)); then
  case " $* " in
    *" --system "*) exec bash scripts/host/install-host.sh "$@" ;;
    *) echo "install: options need --system (scripts/install.sh --system [--prefix DIR] [--unit-dir DIR] [--config-dir DIR])" >&2; exit 2 ;;
  esac
fi
