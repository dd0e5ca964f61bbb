// Realistic benchmark images built from Debian packages (no Docker engine here).
//
// Layers, shared by both images as a registry would share them:
//   1. base       `debootstrap --variant=minbase bookworm` (like debian:bookworm)
//   2. toolchain  ca-certificates, curl, gcc, libc6-dev, make (like buildpack-deps)
//   3. python     python3, pip, venv, dev headers (like python:3.11)
//   3'. gcc-app   /app/hello.c (a file layer)
// Images:
//   bench/python  base + toolchain + python; imports a dozen stdlib modules, prints READY
//   bench/gcc     base + toolchain + gcc-app; compiles hello.c, runs it, prints READY
//
// Package layers are made the way image builders make them: the packages are
// installed with apt-get in a chroot on an overlayfs whose lower layers are the
// previous layers, and the upper directory (converted from overlay whiteouts to
// OCI `.wh.` entries) is the layer. Uncompressed tars, gzipped blobs and the
// registry storage are cached under the cache directory, so a rerun only checks.
// Each image is pushed with skopeo (tag `plain`), converted to eStargz with
// `ctr-remote images convert --estargz --oci` through a scratch containerd (tag
// `estargz`), and optimized the stargz way, files in the order the workload
// read them (`ctr-remote images optimize --oci --period 15`, tag `optimized`).
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { pipeline } from "node:stream/promises";
import { createGzip } from "node:zlib";
import { layerTar, writeImageLayout } from "./oci-image.js";
import { APP_LAYERS } from "./workload-apps.js";
import { removeScratch, run, runOk, scratchDir, unmountBelow } from "../lib/processes.js";

export const DEFAULT_CACHE = process.env.AUGUR_BENCH_CACHE ?? "/var/cache/augur-bench";
export const MIRROR = "http://deb.debian.org/debian";
export const SUITE = "bookworm";

/** A workload the benchmark runs: the image's default command prints `ready` when the app is up. */
export interface Workload {
  name: string;
  /** Repository path in the registry, e.g. bench/python. */
  repo: string;
  /** Layers (names from LAYERS / file layers) bottom to top. */
  layers: string[];
  cmd: string[];
  ready: string;
  description: string;
}

export const PYTHON_MODULES = ["json", "asyncio", "email", "http.client", "sqlite3", "decimal", "xml.etree.ElementTree", "urllib.request", "logging", "argparse", "csv", "unittest", "ssl", "ctypes"];

export const WORKLOADS: Record<string, Workload> = {
  python: {
    name: "python",
    repo: "bench/python",
    layers: ["base", "toolchain", "python"],
    cmd: ["python3", "-c", `import ${PYTHON_MODULES.join(", ")}; print("READY", flush=True)`],
    ready: "READY",
    description: `python3 importing ${PYTHON_MODULES.length} stdlib modules (${PYTHON_MODULES.join(", ")})`,
  },
  gcc: {
    name: "gcc",
    repo: "bench/gcc",
    layers: ["base", "toolchain", "gcc-app"],
    cmd: ["sh", "-c", "gcc -O2 -o /tmp/hello /app/hello.c && /tmp/hello"],
    ready: "READY",
    description: "gcc -O2 compiles /app/hello.c (stdio + math), then runs it",
  },
  // Workloads people start often, for traces and predictions (workload-apps.ts, docs/prediction.md).
  "py-web": {
    name: "py-web",
    repo: "bench/py-web",
    layers: ["base", "toolchain", "python", "py-web"],
    cmd: ["python3", "/app/web.py"],
    ready: "READY",
    description: "a python WSGI web app answering one request",
  },
  "py-data": {
    name: "py-data",
    repo: "bench/py-data",
    layers: ["base", "toolchain", "python", "py-data"],
    cmd: ["python3", "/app/main.py"],
    ready: "READY",
    description: "a python data script importing its own modules (csv, sqlite3, statistics)",
  },
  "node-tool": {
    name: "node-tool",
    repo: "bench/node-tool",
    layers: ["base", "nodejs", "node-tool"],
    cmd: ["node", "/app/tool.js"],
    ready: "READY",
    description: "a node command-line tool (fs, zlib, crypto)",
  },
  "shell-tool": {
    name: "shell-tool",
    repo: "bench/shell-tool",
    layers: ["base", "shell-tool"],
    cmd: ["/app/tool.sh"],
    ready: "READY",
    description: "a shell-script tool (find, grep, sed, awk, tar, gzip, sha256sum)",
  },
  "gcc-build": {
    name: "gcc-build",
    repo: "bench/gcc-build",
    layers: ["base", "toolchain", "gcc-build"],
    cmd: ["sh", "-c", "make -s -C /app/proj && /tmp/proj"],
    ready: "READY",
    description: "make builds a three-file C project, then runs it",
  },
};

/** apt layers: packages installed on top of the layers before them. */
const APT_LAYERS: Record<string, { packages: string[]; parent: string }> = {
  toolchain: { parent: "base", packages: ["ca-certificates", "curl", "netbase", "gcc", "libc6-dev", "make"] },
  python: { parent: "toolchain", packages: ["python3", "python3-pip", "python3-venv", "python3-dev"] },
  nodejs: { parent: "base", packages: ["nodejs"] },
};

const HELLO_C = `#include <math.h>
#include <stdio.h>
#include <string.h>

int main(void) {
  char buf[64];
  snprintf(buf, sizeof buf, "%s", "READY");
  double x = sqrt(2.0);
  if (x > 1.41 && strlen(buf) == 5) printf("%s\\n", buf);
  return 0;
}
`;

export interface LayerInfo {
  name: string;
  /** sha256 of the uncompressed tar (the diff ID). */
  diffId: string;
  /** Digest and size of the gzip blob. */
  digest: string;
  size: number;
  uncompressedSize: number;
}

const log = (msg: string): void => console.log(`[debian-image] ${msg}`);

/** A stream pass-through that hashes and counts what flows through it. */
class Hasher extends Transform {
  readonly hash = createHash("sha256");
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

async function sh(cmd: string, args: string[], timeoutMs = 30 * 60_000): Promise<string> {
  return runOk(cmd, args, { timeoutMs });
}

/** GNU tar of a directory, sorted and with numeric owners so reruns give the same bytes. */
async function tarDir(dir: string, out: string, excludes: string[] = []): Promise<void> {
  const tmp = `${out}.tmp`;
  await sh("tar", ["-C", dir, "--sort=name", "--numeric-owner", "--format=posix", "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime", ...excludes.map((e) => `--exclude=${e}`), "-cf", tmp, "."]);
  renameSync(tmp, out);
}

/** debootstrap minbase → <cache>/layers/base.tar (cached). */
async function buildBase(cache: string, work: string): Promise<string> {
  const out = join(cache, "layers", "base.tar");
  if (existsSync(out)) return out;
  const root = join(work, "base-rootfs");
  mkdirSync(root, { recursive: true });
  log(`debootstrap --variant=minbase ${SUITE} (${MIRROR}); a few minutes`);
  await sh("debootstrap", ["--variant=minbase", "--arch=amd64", SUITE, root, MIRROR]);
  await unmountBelow(root);
  // What a container image does not carry: the runtime provides these.
  for (const f of ["etc/resolv.conf", "etc/hostname", "etc/hosts"]) rmSync(join(root, f), { force: true });
  rmSync(join(root, "var/lib/apt/lists"), { recursive: true, force: true });
  mkdirSync(join(root, "var/lib/apt/lists/partial"), { recursive: true });
  rmSync(join(root, "var/cache/apt/archives"), { recursive: true, force: true });
  mkdirSync(join(root, "var/cache/apt/archives/partial"), { recursive: true });
  writeFileSync(join(root, "etc/apt/apt.conf.d/docker-clean"), 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };\n');
  await tarDir(root, out, ["./dev/*", "./proc/*", "./sys/*", "./run/*", "./tmp/*", "./var/log/bootstrap.log", "./debootstrap"]);
  return out;
}

/**
 * Runs apt-get install in a chroot on overlayfs (lower = `lowers`, top first)
 * and returns the upper directory, still in overlayfs form.
 */
async function aptOverlay(work: string, name: string, lowers: string[], packages: string[]): Promise<string> {
  const upper = join(work, `${name}-upper`);
  const ovlWork = join(work, `${name}-work`);
  const merged = join(work, `${name}-merged`);
  for (const d of [upper, ovlWork, merged]) mkdirSync(d, { recursive: true });
  await sh("mount", ["-t", "overlay", "overlay", "-o", `lowerdir=${lowers.join(":")},upperdir=${upper},workdir=${ovlWork}`, merged]);
  try {
    await sh("mount", ["-t", "proc", "proc", join(merged, "proc")]);
    await sh("mount", ["--bind", "/dev", join(merged, "dev")]);
    writeFileSync(join(merged, "etc/resolv.conf"), readFileSync("/etc/resolv.conf"));
    writeFileSync(join(merged, "usr/sbin/policy-rc.d"), "#!/bin/sh\nexit 101\n", { mode: 0o755 });
    log(`apt-get install ${packages.join(" ")} (layer ${name})`);
    const script = [
      "set -e",
      "export DEBIAN_FRONTEND=noninteractive",
      "apt-get update -q",
      `apt-get install -y -q --no-install-recommends ${packages.join(" ")}`,
      "apt-get clean",
      "rm -rf /var/lib/apt/lists/* /var/cache/debconf/*-old /var/lib/dpkg/*-old /var/log/apt/eipp.log.xz",
    ].join("\n");
    await sh("chroot", [merged, "/bin/sh", "-c", script]);
    rmSync(join(merged, "usr/sbin/policy-rc.d"), { force: true });
    rmSync(join(merged, "etc/resolv.conf"), { force: true });
  } finally {
    await unmountBelow(merged);
  }
  rmSync(ovlWork, { recursive: true, force: true });
  rmSync(merged, { recursive: true, force: true });
  return upper;
}

/**
 * Converts an overlayfs upper directory in place to OCI layer form (.wh. files,
 * opaque markers). overlayfs marks every directory it creates inside a merged
 * directory opaque; a marker is only written where a lower layer has the directory.
 */
async function overlayToOci(upper: string, lowers: string[]): Promise<void> {
  // Whiteouts: character devices 0/0.
  const chars = (await sh("find", [upper, "-type", "c", "-print0"])).split("\0").filter(Boolean);
  for (const p of chars) {
    const st = statSync(p);
    if (st.rdev !== 0) continue;
    unlinkSync(p);
    const slash = p.lastIndexOf("/");
    writeFileSync(`${p.slice(0, slash)}/.wh.${p.slice(slash + 1)}`, "");
  }
  // Opaque directories: trusted.overlay.opaque=y.
  const dump = await run("getfattr", ["-R", "--absolute-names", "-m", "^trusted\\.overlay\\.opaque$", "-d", upper]);
  let current = "";
  for (const line of dump.stdout.split("\n")) {
    if (line.startsWith("# file: ")) current = line.slice(8);
    else if (line.startsWith("trusted.overlay.opaque=") && line.includes('"y"') && current) {
      const rel = relative(upper, current);
      if (rel !== "" && lowers.some((l) => existsSync(join(l, rel)))) writeFileSync(join(current, ".wh..wh..opq"), "");
    }
  }
  if (dump.code !== 0 && dump.stdout === "") throw new Error(`getfattr failed: ${dump.stderr}`);
}

/** Builds (or finds) the uncompressed tar of every layer under <cache>/layers. */
async function buildLayerTars(cache: string): Promise<Record<string, string>> {
  mkdirSync(join(cache, "layers"), { recursive: true });
  const tars: Record<string, string> = {};
  const wanted = ["base", ...Object.keys(APT_LAYERS), "gcc-app", ...Object.keys(APP_LAYERS)];
  const missing = wanted.filter((n) => !existsSync(join(cache, "layers", `${n}.tar`)));
  if (missing.length > 0) {
    const work = scratchDir("augur-img-");
    try {
      tars.base = await buildBase(cache, work);
      // A missing apt layer is built with the apt layers below it (each overlay needs the ones
      // below in overlay form); layers on other chains stay as they are.
      const order = Object.keys(APT_LAYERS);
      const ancestors = (n: string): string[] => {
        const out: string[] = [];
        for (let p = APT_LAYERS[n]?.parent; p && p !== "base"; p = APT_LAYERS[p]?.parent) out.push(p);
        return out;
      };
      const rebuild = new Set(order.filter((n) => missing.includes(n)).flatMap((n) => [n, ...ancestors(n)]));
      if (rebuild.size > 0) {
        const baseRoot = join(work, "base-extracted");
        mkdirSync(baseRoot, { recursive: true });
        await sh("tar", ["-C", baseRoot, "--numeric-owner", "-xpf", tars.base]);
        const uppers: Record<string, string> = { base: baseRoot };
        const chains: Record<string, string[]> = {};
        for (const name of order.filter((n) => rebuild.has(n))) {
          const chain: string[] = [];
          for (let p: string | undefined = APT_LAYERS[name]?.parent; p; p = APT_LAYERS[p]?.parent) chain.push(uppers[p] ?? "");
          chains[name] = chain;
          uppers[name] = await aptOverlay(work, name, chain, APT_LAYERS[name]?.packages ?? []);
        }
        for (const name of order.filter((n) => rebuild.has(n))) {
          const upper = uppers[name] ?? "";
          await overlayToOci(upper, chains[name] ?? []);
          await tarDir(upper, join(cache, "layers", `${name}.tar`));
        }
      }
      if (missing.includes("gcc-app")) {
        const t = await layerTar([
          { type: "dir", path: "app" },
          { type: "file", path: "app/hello.c", content: HELLO_C },
        ]);
        writeFileSync(join(cache, "layers", "gcc-app.tar"), t);
      }
      for (const [name, entries] of Object.entries(APP_LAYERS)) {
        if (missing.includes(name)) writeFileSync(join(cache, "layers", `${name}.tar`), await layerTar(entries));
      }
    } finally {
      await removeScratch(work);
    }
  }
  for (const n of wanted) tars[n] = join(cache, "layers", `${n}.tar`);
  return tars;
}

/** gzip blob of a layer tar, cached next to it with its digests. */
async function compressLayer(cache: string, name: string, tarPath: string): Promise<LayerInfo> {
  const meta = join(cache, "layers", `${name}.json`);
  const tarStat = statSync(tarPath);
  if (existsSync(meta)) {
    const info = JSON.parse(readFileSync(meta, "utf8")) as LayerInfo & { tarMtimeMs: number };
    if (info.tarMtimeMs === tarStat.mtimeMs && existsSync(join(cache, "layers", `${name}.tar.gz`))) return info;
  }
  log(`gzip layer ${name} (${(tarStat.size / 1e6).toFixed(1)} MB)`);
  const inHash = new Hasher();
  const outHash = new Hasher();
  const gz = join(cache, "layers", `${name}.tar.gz`);
  await pipeline(createReadStream(tarPath, { highWaterMark: 1 << 20 }), inHash, createGzip({ level: 6, chunkSize: 1 << 20 }), outHash, createWriteStream(gz));
  const info = {
    name,
    diffId: `sha256:${inHash.hash.digest("hex")}`,
    digest: `sha256:${outHash.hash.digest("hex")}`,
    size: outHash.bytes,
    uncompressedSize: inHash.bytes,
    tarMtimeMs: tarStat.mtimeMs,
  };
  writeFileSync(meta, JSON.stringify(info, null, 2));
  return info;
}

export interface BuiltDebianImage {
  workload: Workload;
  layoutDir: string;
  layers: LayerInfo[];
  manifestDigest: string;
}

/** Writes the OCI layout of `workload` under <cache>/oci/<name> (blobs hard-linked/copied from the layer cache). */
async function writeLayout(cache: string, workload: Workload, layers: LayerInfo[]): Promise<BuiltDebianImage> {
  const dir = join(cache, "oci", workload.name);
  rmSync(dir, { recursive: true, force: true });
  const blobs = join(dir, "blobs", "sha256");
  mkdirSync(blobs, { recursive: true });
  for (const l of layers) await sh("cp", ["--reflink=auto", join(cache, "layers", `${l.name}.tar.gz`), join(blobs, l.digest.slice(7))]);
  const created = "2024-01-01T00:00:00Z";
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      created,
      config: { Cmd: workload.cmd, Env: ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"], WorkingDir: "/" },
      rootfs: { type: "layers", diff_ids: layers.map((l) => l.diffId) },
      history: layers.map((l) => ({ created, created_by: `augur bench layer ${l.name}` })),
    }),
  );
  const gzipLayers = layers.map((l) => ({ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: l.digest, size: l.size }));
  const manifestDigest = writeImageLayout(dir, config, gzipLayers, "plain");
  return { workload, layoutDir: dir, layers, manifestDigest };
}

/** Builds every workload image's OCI layout (cached layers). */
export async function buildDebianImages(cache = DEFAULT_CACHE, names = Object.keys(WORKLOADS)): Promise<BuiltDebianImage[]> {
  const tars = await buildLayerTars(cache);
  const infos: Record<string, LayerInfo> = {};
  const out: BuiltDebianImage[] = [];
  for (const name of names) {
    const w = WORKLOADS[name];
    if (!w) throw new Error(`unknown workload ${name} (known: ${Object.keys(WORKLOADS).join(", ")})`);
    for (const l of w.layers) infos[l] ??= await compressLayer(cache, l, tars[l] ?? "");
    out.push(await writeLayout(cache, w, w.layers.map((l) => infos[l] as LayerInfo)));
  }
  return out;
}

/** The registry storage directory images are pushed into (docker-registry `filesystem` driver). */
export function registryStorage(cache = DEFAULT_CACHE): string {
  return join(cache, "registry", "registry-data");
}

/** A size summary of the images as pushed: per layer compressed/uncompressed, and the eStargz blobs. */
export function describeLayers(layers: LayerInfo[]): string {
  return layers.map((l) => `${l.name} ${(l.size / 1e6).toFixed(1)} MB gz / ${(l.uncompressedSize / 1e6).toFixed(1)} MB tar`).join(", ");
}

/** Reads a manifest's layer sizes straight out of the registry storage (used for the eStargz variant). */
export function storedManifestLayers(cache: string, repo: string, tag: string): { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[] {
  const storage = join(registryStorage(cache), "docker", "registry", "v2");
  const link = join(storage, "repositories", repo, "_manifests", "tags", tag, "current", "link");
  const digest = readFileSync(link, "utf8").trim();
  const hex = digest.replace(/^sha256:/, "");
  const manifest = JSON.parse(readFileSync(join(storage, "blobs", "sha256", hex.slice(0, 2), hex, "data"), "utf8")) as {
    layers: { digest: string; size: number; mediaType: string; annotations?: Record<string, string> }[];
  };
  return manifest.layers;
}

export function listCachedLayers(cache = DEFAULT_CACHE): string[] {
  const d = join(cache, "layers");
  return existsSync(d) ? readdirSync(d) : [];
}

export interface PushedImage {
  workload: Workload;
  plain: { tag: string; layers: LayerInfo[]; manifestDigest: string };
  estargz: { tag: string; layers: { digest: string; size: number }[] } | null;
}

/**
 * Pushes the built images into the cached registry storage (tag `plain`) and
 * adds the eStargz conversion (tag `estargz`, skipped when already converted
 * from the same plain manifest). Uses a scratch docker-registry and containerd.
 */
export async function pushDebianImages(images: BuiltDebianImage[], cache = DEFAULT_CACHE, opts: { estargz?: boolean } = {}): Promise<PushedImage[]> {
  const { startRegistry } = await import("../lib/registry.js");
  const { startContainerd } = await import("../lib/containerd.js");
  const regDir = join(cache, "registry");
  mkdirSync(regDir, { recursive: true });
  const registry = await startRegistry(regDir);
  const dir = scratchDir("augur-imgpush-");
  let containerd: Awaited<ReturnType<typeof startContainerd>> | undefined;
  const out: PushedImage[] = [];
  try {
    for (const img of images) {
      const ref = `${registry.host}/${img.workload.repo}`;
      log(`skopeo copy oci:${img.layoutDir}:plain docker://${ref}:plain`);
      await sh("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests", `oci:${img.layoutDir}:plain`, `docker://${ref}:plain`]);
      const pushed: PushedImage = { workload: img.workload, plain: { tag: "plain", layers: img.layers, manifestDigest: img.manifestDigest }, estargz: null };
      const marker = join(regDir, `${img.workload.name}.estargz-from`);
      if (opts.estargz !== false) {
        const upToDate = existsSync(marker) && readFileSync(marker, "utf8").trim() === img.manifestDigest;
        if (!upToDate) {
          containerd ??= await startContainerd(dir, join(dir, "augur.sock"));
          const ctrRemote = (args: string[]): Promise<string> => sh("ctr-remote", ["--address", containerd?.address ?? "", ...args]);
          log(`ctr-remote images convert --estargz --oci ${ref}:plain ${ref}:estargz`);
          await ctrRemote(["images", "pull", "--plain-http", `${ref}:plain`]);
          await ctrRemote(["images", "convert", "--estargz", "--oci", `${ref}:plain`, `${ref}:estargz`]);
          await ctrRemote(["images", "push", "--plain-http", `${ref}:estargz`]);
          writeFileSync(marker, img.manifestDigest + "\n");
        }
        pushed.estargz = { tag: "estargz", layers: storedManifestLayers(cache, img.workload.repo, "estargz") };
        // stargz-snapshotter's recorded-order image: the workload runs once, the files it read go first, in order
        const optimizedMarker = join(regDir, `${img.workload.name}.optimized-from`);
        if (!(existsSync(optimizedMarker) && readFileSync(optimizedMarker, "utf8").trim() === img.manifestDigest)) {
          containerd ??= await startContainerd(dir, join(dir, "augur.sock"));
          const ctrRemote = (args: string[]): Promise<string> => sh("ctr-remote", ["--address", containerd?.address ?? "", ...args]);
          log(`ctr-remote images optimize --oci --period 15 ${ref}:plain ${ref}:optimized`);
          await ctrRemote(["images", "pull", "--plain-http", `${ref}:plain`]);
          await ctrRemote(["images", "optimize", "--oci", "--period", "15", `${ref}:plain`, `${ref}:optimized`]);
          await ctrRemote(["images", "push", "--plain-http", `${ref}:optimized`]);
          writeFileSync(optimizedMarker, img.manifestDigest + "\n");
        }
      }
      out.push(pushed);
    }
  } finally {
    await containerd?.stop();
    await registry.stop();
    await removeScratch(dir);
  }
  return out;
}
