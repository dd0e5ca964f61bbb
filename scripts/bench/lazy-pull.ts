// Hello-bench style lazy-pull benchmark.
//
// The registry runs in a network namespace behind `tc htb` (default 100 Mbit/s)
// and a user-space proxy that adds per-connection and per-request latency and
// counts bytes (scripts/bench/netns.ts). For each mode and run, from a wiped
// state (fresh containerd root, fresh augur root and cache), it times from the
// start of the pull until the container prints READY, and records the bytes
// that crossed the proxy before READY and augur's peak RSS (VmHWM).
//
//   npm run bench -- [--image python] [--modes overlayfs,local,...] [--runs 3]
//                    [--rate 100] [--latency 20] [--out FILE] [--build]
//
// Modes:
//   overlayfs            ctr images pull --snapshotter overlayfs, then ctr run (the full pull)
//   local                the image already pulled and unpacked; only ctr run is timed
//   augur-plain-first    ctr-remote images rpull --snapshotter augur on the plain gzip image, empty cache
//   augur-plain-indexed  the same, with the layer indexes from an earlier first contact kept in the cache
//                        (everything else wiped: see --keep-cache-subdirs)
//   augur-estargz        ctr-remote images rpull --snapshotter augur on the eStargz image
//   stargz-estargz       stargz-snapshotter 0.12 (../shared/anchors, built from Debian's sources) on the eStargz image
//   stargz-optimized     stargz-snapshotter on its recorded-order image (ctr-remote images optimize)
//   augur-estargz-warm   a second container of the eStargz image once the first has run: everything
//                        local, every read through augur's FUSE layers (only ctr run is timed, as for local)
//   augur-plain-history  "augur with history": the plain image on a node that ran it once (an untimed
//                        first contact): its access traces and layer indexes kept, the data cache empty
//   augur-plain-registry "profile from the registry": another node ran the image once (untimed) and
//                        pushed its profile (augur manifest push); the timed node never saw the image,
//                        its root and cache are empty. The image is served under <repo>-fleet so the
//                        artifact is seen by no other mode (<repo>-pinned for the pinned mode).
//   augur-plain-registry-pinned  the same, with the artifact's digest pinned on the timed node (--trust-artifact):
//                        its indexes are used without tar-header checks (the cost of those checks, by difference)
//   augur-shared-first   --shared-image (default py-data: the python image's layers plus its own), never
//                        run anywhere, on an empty node: first contact
//   augur-shared-cluster the same with --cluster-manifest: another node ran --image once and pushed the
//                        cluster manifest (augur manifest push --cluster), which holds the shared layers'
//                        profiles and indexes
//   augur-plain-peer     "a warm peer": another node (augur --serve-cache, on this host, its link not shaped)
//                        ran the plain image once (untimed) and keeps serving its cache; the timed node,
//                        root and cache empty, has --peer pointing at it. Its registry bytes are the
//                        manifests'; what the peer sent is reported beside them.
//   augur-plain-peer-registry  a warm peer that also published: the peer node of augur-plain-peer ran the image
//                        with its traces and pushed its profile and indexes (augur manifest push, under
//                        <repo>-peer); the timed node, root and cache empty, has --peer and finds the artifact:
//                        the indexes (checked like any from the registry) say where the bytes are and what
//                        they must hash to, so the layer's ranges come from the peer
//   augur-estargz-redirect-each  augur-estargz with blob locations not kept (AUGUR_BLOB_LOCATION_TTL_MS=0): with
//                        --redirect, every Range request follows the registry's redirect (the cost augur's reuse saves)
//
// --redirect puts a front before the registry that answers every blob GET with a 307 to a storage URL after
// one round trip (as Docker Hub, ECR and GCR do); the storage request then pays the proxy's latency like any other.
//
// The registry serves a scratch copy of the storage (blobs hard-linked, repositories copied), writable
// for the registry modes' pushes and removed afterwards.
import { spawn } from "node:child_process";
import { request as httpRequest } from "node:http";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { AUGUR_BIN, REPO, startAugur, type Augur } from "../lib/augur.js";
import { startContainerd, type Containerd } from "../lib/containerd.js";
import { canConnect, freePort, removeScratch, runOk, scratchDir, startProcess, waitFor, type Proc } from "../lib/processes.js";
import { DEFAULT_CACHE, WORKLOADS, buildDebianImages, pushDebianImages, registryStorage, storedManifestLayers, type Workload } from "../images/debian-image.js";
import { startSlowRegistry, type ProxiedRequest, type SlowRegistry } from "./netns.js";

export const MODES = [
  "overlayfs", "local", "stargz-estargz", "stargz-optimized", "augur-plain-first", "augur-plain-indexed", "augur-estargz",
  "augur-plain-history", "augur-plain-registry", "augur-estargz-warm", "augur-shared-first", "augur-shared-cluster",
  "augur-plain-peer", "augur-estargz-redirect-each", "augur-plain-registry-pinned", "augur-plain-peer-registry",
] as const;
export type Mode = (typeof MODES)[number];

const { values } = parseArgs({
  options: {
    image: { type: "string", default: "python" },
    // The image of the augur-shared-* modes: shares layers with --image, never run in the bench.
    "shared-image": { type: "string", default: "py-data" },
    modes: { type: "string", default: MODES.join(",") },
    runs: { type: "string", default: "3" },
    rate: { type: "string", default: "100" },
    latency: { type: "string", default: "20" },
    cache: { type: "string", default: DEFAULT_CACHE },
    out: { type: "string" },
    build: { type: "boolean", default: false },
    redirect: { type: "boolean", default: false },
    timeout: { type: "string", default: "600" },
    "drop-caches": { type: "boolean", default: false },
    // How augur is started. {cache} is replaced by the run's augur cache directory,
    // {hosts} by a containerd-style hosts directory naming the registry as plain HTTP.
    "augur-args": { type: "string", default: "--cache-dir {cache} --hosts-dir {hosts}" },
    // For augur-plain-indexed: which subdirectories of the cache survive from the first contact.
    "keep-cache-subdirs": { type: "string", default: "indexes" },
    // Median seconds of an earlier overlayfs full pull, for ratios when --modes leaves overlayfs out.
    "baseline-s": { type: "string" },
    // Record every registry request of each timed run (with times) in the JSON results.
    timeline: { type: "boolean", default: false },
    verbose: { type: "boolean", short: "v", default: false },
  },
});

const workload: Workload | undefined = WORKLOADS[values.image];
if (!workload) throw new Error(`unknown --image ${values.image} (known: ${Object.keys(WORKLOADS).join(", ")})`);
const sharedWorkload: Workload | undefined = WORKLOADS[values["shared-image"]];
if (!sharedWorkload) throw new Error(`unknown --shared-image ${values["shared-image"]} (known: ${Object.keys(WORKLOADS).join(", ")})`);
const modes = values.modes.split(",").map((m) => m.trim()) as Mode[];
for (const m of modes) if (!MODES.includes(m)) throw new Error(`unknown mode ${m} (known: ${MODES.join(", ")})`);
const runs = Number(values.runs);
const timeoutMs = Number(values.timeout) * 1000;
const keepSubdirs = values["keep-cache-subdirs"].split(",").filter(Boolean);
const cache = values.cache;
/** containerd-style hosts directory (<host>/hosts.toml) for the registry, written once the proxy listens. */
let hostsDir = "";

const say = (msg: string): void => console.log(msg);
const debug = (msg: string): void => {
  if (values.verbose) console.log(`    ${msg}`);
};

// ---------------------------------------------------------------- results

interface RunResult {
  ok: boolean;
  error?: string;
  /** Seconds from pull start to READY. */
  readyS?: number;
  /** Seconds the pull command took (0 for local). */
  pullS?: number;
  /** Bytes registry → node before READY, and in the whole run. */
  bytesBeforeReady?: number;
  bytesTotal?: number;
  requestsBeforeReady?: number;
  /** augur's VmHWM, bytes. */
  augurPeakRss?: number;
  /** With --timeline: every registry request, ms since the pull started. */
  requests?: ProxiedRequest[];
  /** augur's own figures at READY (GET /cache/status): prefetched bytes used, read bytes that were fetched ahead. */
  prefetchPrecision?: number;
  prefetchRecall?: number;
  /** Bytes peers sent before READY (augur-plain-peer). */
  peerBytes?: number;
}

interface ModeResult {
  mode: Mode;
  runs: RunResult[];
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const n = s.length;
  return n === 0 ? NaN : n % 2 ? (s[(n - 1) / 2] as number) : ((s[n / 2 - 1] as number) + (s[n / 2] as number)) / 2;
};

// ---------------------------------------------------------------- one run

/** VmHWM of a process, bytes (0 if it is gone). */
function peakRss(pid: number): number {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/** Runs a container and resolves when it prints `ready` (then waits for it to exit). */
function runUntilReady(containerd: Containerd, args: string[], ready: string, onReady: () => void): Promise<{ output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn("ctr", ["--address", containerd.address, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let seen = false;
    const timer = setTimeout(() => {
      if (child.pid) process.kill(child.pid, "SIGKILL");
      reject(new Error(`timed out after ${timeoutMs / 1000} s waiting for ${ready}; output:\n${out.slice(-2000)}`));
    }, timeoutMs);
    const onData = (chunk: Buffer): void => {
      out += chunk.toString();
      if (!seen && out.includes(ready)) {
        seen = true;
        onReady();
      }
    };
    child.stdout.on("data", onData);
    child.stderr.on("data", (c: Buffer) => (out += c.toString()));
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (seen) resolve({ output: out });
      else reject(new Error(`ctr ${args.join(" ")} exited ${code} without printing ${ready}:\n${out.slice(-2000)}`));
    });
  });
}

interface RunEnv {
  dir: string;
  augurCache: string;
  augur?: Augur;
  stargz?: Proc;
  containerd: Containerd;
}

/** The stargz-snapshotter anchor, built once into the bench cache (../shared/anchors/stargz-grpc/build.sh). */
async function stargzBinary(): Promise<string> {
  const bin = join(cache, "bin", "stargz-grpc");
  if (existsSync(bin)) return bin;
  const build = join(REPO, "..", "shared", "anchors", "stargz-grpc", "build.sh");
  if (!existsSync(build)) throw new Error(`stargz-snapshotter anchor not found (${build}); the stargz modes need it`);
  mkdirSync(join(cache, "bin"), { recursive: true });
  await runOk("bash", [build, bin], { timeoutMs: 600_000 });
  return bin;
}

/** What a timed run starts from: cache subdirectories and (history) the traces of an earlier run. */
interface Seed {
  dir: string;
  subdirs: string[];
  traces: boolean;
}

async function startEnv(mode: Mode, seed?: Seed, moreAugurArgs: string[] = []): Promise<RunEnv> {
  const dir = scratchDir("augur-bench-");
  const augurCache = join(dir, "augur-cache");
  mkdirSync(augurCache, { recursive: true });
  if (seed) for (const sub of seed.subdirs) if (existsSync(join(seed.dir, "cache", sub))) cpSync(join(seed.dir, "cache", sub), join(augurCache, sub), { recursive: true });
  if (seed?.traces) cpSync(join(seed.dir, "traces"), join(dir, "ar", "traces"), { recursive: true });
  let augur: Augur | undefined;
  let stargz: Proc | undefined;
  try {
    if (mode.startsWith("stargz")) {
      const sock = join(dir, "stargz.sock");
      stargz = startProcess(await stargzBinary(), ["--root", join(dir, "sr"), "--address", sock], join(dir, "stargz.log"));
      await waitFor("stargz-snapshotter to serve", () => canConnect(sock), 20_000, stargz);
    }
    if (mode.startsWith("augur")) {
      const extra = values["augur-args"].split(" ").filter(Boolean).map((a) => a.replaceAll("{cache}", augurCache).replaceAll("{hosts}", hostsDir));
      const env = mode === "augur-estargz-redirect-each" ? { AUGUR_BLOB_LOCATION_TTL_MS: "0" } : undefined;
      augur = await startAugur(dir, { root: join(dir, "ar"), socket: join(dir, "augur.sock"), extraArgs: [...extra, ...moreAugurArgs], ...(env ? { env } : {}) });
    }
    const containerd = await startContainerd(dir, augur?.socket ?? join(dir, "augur.sock"), stargz ? { proxies: { stargz: join(dir, "stargz.sock") } } : {});
    return { dir, augurCache, augur, stargz, containerd };
  } catch (err) {
    await augur?.stop();
    await stargz?.stop();
    await removeScratch(dir);
    throw err;
  }
}

async function stopEnv(env: RunEnv): Promise<void> {
  await env.containerd.stop().catch((e: unknown) => say(`    containerd stop: ${String(e)}`));
  await env.augur?.stop().catch((e: unknown) => say(`    augur stop: ${String(e)}`));
  await env.stargz?.stop().catch((e: unknown) => say(`    stargz stop: ${String(e)}`));
  // AUGUR_DEBUG=prefetch (or another module) in the environment: its lines, for -v
  if (values.verbose && env.augur && process.env.AUGUR_DEBUG) for (const l of env.augur.proc.log().split("\n").filter((x) => x.includes(" debug ") || x.includes("mounted lazily"))) debug(l);
  await removeScratch(env.dir);
}

function dropCaches(): void {
  if (!values["drop-caches"]) return;
  try {
    writeFileSync("/proc/sys/vm/drop_caches", "3");
  } catch {
    // not permitted: ignore
  }
}

/**
 * One timed run in `env`. Returns the result; the caller stops the env.
 */
async function timedRun(mode: Mode, env: RunEnv, reg: SlowRegistry, ref: string, n: number): Promise<RunResult> {
  const { containerd, augur } = env;
  const snapshotter = mode.startsWith("augur") ? "augur" : mode.startsWith("stargz") ? "stargz" : "overlayfs";
  if (mode === "local") {
    await containerd.ctrOk(["images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref], timeoutMs);
  }
  const warm = mode.endsWith("-warm");
  if (warm) {
    // the first container reads everything it needs through augur; the timed one finds it local
    await runOk("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs });
    await runUntilReady(containerd, ["run", "--rm", "--snapshotter", "augur", ref, `warmup-${n}`], workload?.ready ?? "READY", () => undefined);
  }
  dropCaches();
  reg.proxy.reset();
  let readyAt = 0;
  let atReady = reg.proxy.stats();
  let figures: Promise<{ prefetchPrecision?: number; prefetchRecall?: number; peerBytes?: number }> = Promise.resolve({});
  const t0 = performance.now();
  if (mode === "overlayfs") {
    await containerd.ctrOk(["images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref], timeoutMs);
  } else if (mode !== "local" && !warm) {
    await runOk("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", snapshotter, ref], { timeoutMs });
  }
  const pullS = (performance.now() - t0) / 1000;
  debug(`pull ${pullS.toFixed(2)} s, ${(reg.proxy.stats().down / 1e6).toFixed(1)} MB`);
  await runUntilReady(containerd, ["run", "--rm", "--snapshotter", snapshotter, ref, `bench-${n}`], workload?.ready ?? "READY", () => {
    readyAt = performance.now();
    atReady = reg.proxy.stats();
    if (augur) figures = prefetchFigures(augur);
  });
  const atReadyFigures = await figures;
  const total = reg.proxy.stats();
  return {
    ok: true,
    readyS: (readyAt - t0) / 1000,
    pullS,
    bytesBeforeReady: atReady.down,
    bytesTotal: total.down,
    requestsBeforeReady: atReady.requests,
    augurPeakRss: augur ? peakRss(augur.proc.pid) : undefined,
    requests: values.timeline ? reg.proxy.requests() : undefined,
    ...atReadyFigures,
  };
}

/** augur's GET /cache/status as text ("{}" if it does not answer). */
function cacheStatusText(augur: Augur): Promise<string> {
  return new Promise<string>((resolve) => {
    const req = httpRequest({ socketPath: augur.apiSocket, path: "/cache/status" }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve(text));
    });
    req.on("error", () => resolve("{}"));
    req.end();
  });
}

/**
 * A primed node adds access points to its layer indexes once its container
 * has gone (README, "Access points where reads begin"): wait for that round,
 * as a node that ran the image some time ago would have finished it.
 */
async function indexRefinementDone(augur: Augur): Promise<void> {
  const deadline = Date.now() + 180_000;
  for (;;) {
    let st: { rounds: number; running: boolean; pending: number; added: number } | null | undefined;
    try {
      st = (JSON.parse(await cacheStatusText(augur)) as { indexRefinement?: typeof st }).indexRefinement;
    } catch {
      st = undefined;
    }
    if (st === null) return; // turned off
    if (st && st.rounds > 0 && !st.running && st.pending === 0) {
      debug(`index refinement: ${st.added} access points added in ${st.rounds} round(s)`);
      return;
    }
    if (Date.now() > deadline) throw new Error(`augur did not finish adding access points within 180 s: ${JSON.stringify(st)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** prefetch precision and recall from augur's GET /cache/status. */
async function prefetchFigures(augur: Augur): Promise<{ prefetchPrecision?: number; prefetchRecall?: number; peerBytes?: number }> {
  const body = await cacheStatusText(augur);
  try {
    const st = JSON.parse(body) as { prefetch?: { reads?: { recall?: number }; ahead?: { precision?: number } }; peers?: { bytes?: number } | null };
    if (values.verbose) debug(`augur at READY: ${JSON.stringify(st.prefetch)} peers ${JSON.stringify(st.peers)}`);
    return { prefetchPrecision: st.prefetch?.ahead?.precision, prefetchRecall: st.prefetch?.reads?.recall, ...(st.peers?.bytes !== undefined ? { peerBytes: st.peers.bytes } : {}) };
  } catch {
    return {};
  }
}

/**
 * augur-plain-indexed and augur-plain-history: a first contact (untimed) whose
 * cache keeps only `subdirs` (and, for history, augur's traces).
 */
async function primeNode(reg: SlowRegistry, ref: string, subdirs: string[], traces: boolean, publish?: (root: string, cacheDir: string) => Promise<void>): Promise<Seed> {
  // No native copies: a layer unpacked before the container starts is read without FUSE, and its files would be
  // missing from the trace (a node's first container usually starts while its layers still stream; here containerd
  // waits for the base layer before it even creates the container).
  const env = await startEnv("augur-plain-first", undefined, traces ? ["--no-native-copy"] : []);
  try {
    await runOk("ctr-remote", ["--address", env.containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs });
    await runUntilReady(env.containerd, ["run", "--rm", "--snapshotter", "augur", ref, "prime"], workload?.ready ?? "READY", () => undefined);
    if (traces && env.augur) await indexRefinementDone(env.augur);
  } finally {
    // Stop augur before copying so what it writes at shutdown is included.
    await env.containerd.stop().catch(() => undefined);
    await env.augur?.stop().catch(() => undefined);
  }
  if (publish) {
    try {
      await publish(join(env.dir, "ar"), env.augurCache);
    } catch (err) {
      await removeScratch(env.dir);
      throw err;
    }
  }
  const saved = scratchDir("augur-bench-seed-");
  const held = existsSync(env.augurCache) ? readdirSync(env.augurCache).join(", ") || "nothing" : "nothing";
  const found = subdirs.filter((s) => existsSync(join(env.augurCache, s)) && readdirSync(join(env.augurCache, s)).length > 0);
  for (const sub of found) cpSync(join(env.augurCache, sub), join(saved, "cache", sub), { recursive: true });
  const traceDir = join(env.dir, "ar", "traces");
  const traced = traces && existsSync(traceDir) && readdirSync(traceDir).length > 0;
  if (traced) cpSync(traceDir, join(saved, "traces"), { recursive: true });
  if (values.verbose) for (const l of env.augur?.proc.log().split("\n").filter((x) => / (debug|warn|error) /.test(x)) ?? []) debug(`prime: ${l}`);
  if (traced && values.verbose) debug(await runOk(process.execPath, [join(import.meta.dirname, "../../snapshotter/cli/main.js"), "trace", "export", "--root", env.dir + "/ar"]));
  await removeScratch(env.dir);
  if ((subdirs.length > 0 && found.length === 0) || (traces && !traced)) {
    await removeScratch(saved);
    throw new Error(`first contact left nothing under ${subdirs.map((s) => `<cache>/${s}`).join(", ")}${traces ? " or <root>/traces" : ""} (the cache dir held: ${held}; adapt --keep-cache-subdirs)`);
  }
  return { dir: saved, subdirs: found, traces };
}

/**
 * `augur manifest push` of a primed node's root: the image's profile, or with `cluster` everything at that
 * reference; `pushed` hears the artifact's digest.
 */
const pushManifest = (ref: string, cluster?: string, pushed?: (digest: string) => void) => async (root: string, cacheDir: string): Promise<void> => {
  const args = ["manifest", "push", "--root", root, "--cache-dir", cacheDir, "--plain-http", ...(cluster ? ["--cluster", cluster] : [ref])];
  const out = (await runOk(process.execPath, [AUGUR_BIN, ...args], { timeoutMs })).trim();
  debug(`augur ${args.join(" ")}: ${out}`);
  const digest = /^pushed (sha256:[0-9a-f]{64}) /.exec(out)?.[1];
  if (pushed && !digest) throw new Error(`augur manifest push printed no artifact digest: ${out}`);
  if (pushed && digest) pushed(digest);
};

async function benchMode(mode: Mode, reg: SlowRegistry): Promise<ModeResult> {
  const tag = mode === "augur-estargz" || mode === "stargz-estargz" || mode === "augur-estargz-warm" || mode === "augur-estargz-redirect-each" ? "estargz" : mode === "stargz-optimized" ? "optimized" : "plain";
  const repo = FLEET_MODES.includes(mode) ? fleetRepo(workload?.repo ?? "", mode) : mode.startsWith("augur-shared") ? sharedWorkload?.repo : workload?.repo;
  const ref = `${reg.host}/${repo}:${tag}`;
  const result: ModeResult = { mode, runs: [] };
  let seed: Seed | undefined;
  let moreArgs: string[] = [];
  let peer: RunEnv | undefined;
  try {
    if (mode === "augur-plain-peer" || mode === "augur-plain-peer-registry") {
      const port = await freePort();
      const publishes = mode === "augur-plain-peer-registry";
      say(`  ${mode}: another node runs ${ref} once${publishes ? ", pushes its profile" : ""} and serves its cache on 127.0.0.1:${port} (untimed)`);
      // a node that publishes its profile traces every read (as primeNode's)
      peer = await startEnv("augur-plain-first", undefined, ["--serve-cache", `127.0.0.1:${port}`, ...(publishes ? ["--no-native-copy"] : [])]);
      await runOk("ctr-remote", ["--address", peer.containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs });
      await runUntilReady(peer.containerd, ["run", "--rm", "--snapshotter", "augur", ref, "peer"], workload?.ready ?? "READY", () => undefined);
      if (publishes && peer.augur) {
        await indexRefinementDone(peer.augur);
        await pushManifest(ref)(join(peer.dir, "ar"), peer.augurCache);
      }
      moreArgs = ["--peer", `http://127.0.0.1:${port}`];
    }
    if (mode === "augur-plain-registry" || mode === "augur-plain-registry-pinned") {
      say(`  ${mode}: another node runs ${ref} once and pushes its profile (untimed)`);
      // the timed node gets nothing of that node's but what it pushed into the registry
      const pin = (digest: string): void => {
        if (mode === "augur-plain-registry-pinned") moreArgs = ["--trust-artifact", digest];
      };
      await removeScratch((await primeNode(reg, ref, [], true, pushManifest(ref, undefined, pin))).dir);
    } else if (mode === "augur-shared-cluster") {
      const primed = `${reg.host}/${workload?.repo}:plain`;
      const cluster = `${reg.host}/bench/augur-cluster:${workload?.name}`;
      say(`  ${mode}: another node runs ${primed} once and pushes the cluster manifest to ${cluster} (untimed)`);
      const s = await primeNode(reg, primed, [], true, pushManifest(primed, cluster));
      await removeScratch(s.dir);
      moreArgs = ["--cluster-manifest", cluster];
    } else if (mode === "augur-plain-indexed") {
      say(`  ${mode}: first contact to build the index (untimed)`);
      seed = await primeNode(reg, ref, keepSubdirs, false);
    } else if (mode === "augur-plain-history") {
      say(`  ${mode}: a first run on the node to record its traces and indexes (untimed)`);
      seed = await primeNode(reg, ref, keepSubdirs, true);
    }
    for (let i = 1; i <= runs; i++) {
      let env: RunEnv | undefined;
      try {
        env = await startEnv(mode, seed, moreArgs);
        const r = await timedRun(mode, env, reg, ref, i);
        result.runs.push(r);
        say(
          `  ${mode} run ${i}/${runs}: READY after ${r.readyS?.toFixed(2)} s (pull ${r.pullS?.toFixed(2)} s), ` +
            `${((r.bytesBeforeReady ?? 0) / 1e6).toFixed(1)} MB fetched before READY (${((r.bytesTotal ?? 0) / 1e6).toFixed(1)} MB in all)` +
            (r.augurPeakRss ? `, augur peak RSS ${(r.augurPeakRss / 1e6).toFixed(0)} MB` : "") +
            (r.peerBytes !== undefined ? `, ${(r.peerBytes / 1e6).toFixed(1)} MB from the peer` : "") +
            (r.prefetchRecall !== undefined ? `, prefetch precision ${r.prefetchPrecision?.toFixed(2)} recall ${r.prefetchRecall.toFixed(2)}` : ""),
        );
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        say(`  ${mode} run ${i}/${runs}: FAILED: ${msg.split("\n").slice(0, 6).join("\n      ")}`);
        result.runs.push({ ok: false, error: msg });
        break; // a mode that fails once is reported failed; move on
      } finally {
        if (env) await stopEnv(env);
      }
    }
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    say(`  ${mode}: FAILED: ${msg.split("\n").slice(0, 6).join("\n      ")}`);
    result.runs.push({ ok: false, error: msg });
  } finally {
    if (seed) await removeScratch(seed.dir);
    if (peer) await stopEnv(peer);
  }
  return result;
}

// ---------------------------------------------------------------- report

function imageSummary(): string {
  const lines: string[] = [];
  for (const tag of ["plain", "estargz", "optimized"]) {
    try {
      const layers = storedManifestLayers(cache, workload?.repo ?? "", tag);
      const total = layers.reduce((a, l) => a + l.size, 0);
      lines.push(`${workload?.repo}:${tag}: ${layers.length} layers, ${(total / 1e6).toFixed(1)} MB compressed (${layers.map((l) => (l.size / 1e6).toFixed(1)).join(" + ")})`);
    } catch {
      lines.push(`${workload?.repo}:${tag}: not in the registry storage`);
    }
  }
  return lines.join("\n");
}

/** The issue's targets (stated for the python image): pass/fail lines. */
function targets(results: ModeResult[], baseS: number): string[] {
  const lines: string[] = [];
  const medianOf = (mode: Mode): number | undefined => {
    const r = results.find((x) => x.mode === mode);
    if (!r || r.runs.length === 0 || r.runs.some((x) => !x.ok)) return undefined;
    return median(r.runs.map((x) => x.readyS ?? NaN));
  };
  const check = (what: string, ok: boolean | undefined): string => `- ${ok === undefined ? "NOT MEASURED" : ok ? "PASS" : "FAIL"}: ${what}`;
  const augurModes = MODES.filter((m) => m.startsWith("augur") && results.some((r) => r.mode === m));
  for (const m of augurModes) {
    const s = medianOf(m);
    lines.push(check(`${m} never slower than the full pull (ratio <= 1.00)`, s === undefined || !Number.isFinite(baseS) ? undefined : s <= baseS));
  }
  for (const m of ["augur-plain-indexed", "augur-estargz"] as const) {
    if (!augurModes.includes(m)) continue;
    const s = medianOf(m);
    lines.push(check(`${m} at most 0.25 of the full pull's time`, s === undefined || !Number.isFinite(baseS) ? undefined : s <= 0.25 * baseS));
  }
  const pairs: [Mode, Mode][] = [["augur-estargz", "stargz-estargz"], ["augur-plain-history", "stargz-optimized"], ["augur-plain-registry", "stargz-optimized"]];
  if (results.some((r) => r.mode === "augur-estargz-warm") && results.some((r) => r.mode === "local")) {
    const a = medianOf("augur-estargz-warm");
    const b = medianOf("local");
    lines.push(check(`augur-estargz-warm within 1.3x of local overlayfs (${a?.toFixed(2) ?? "-"} s vs ${b?.toFixed(2) ?? "-"} s)`, a === undefined || b === undefined ? undefined : a <= 1.3 * b));
  }
  for (const peerMode of ["augur-plain-peer", "augur-plain-peer-registry"] as const) {
    if (!results.some((r) => r.mode === peerMode) || !results.some((r) => r.mode === "local")) continue;
    const a = medianOf(peerMode);
    const b = medianOf("local");
    lines.push(check(`${peerMode} within 1.5x of local overlayfs (${a?.toFixed(2) ?? "-"} s vs ${b?.toFixed(2) ?? "-"} s: ${a !== undefined && b !== undefined ? (a / b).toFixed(2) : "-"}x)`, a === undefined || b === undefined ? undefined : a <= 1.5 * b));
  }
  if (results.some((r) => r.mode === "augur-estargz-redirect-each") && results.some((r) => r.mode === "augur-estargz")) {
    const a = medianOf("augur-estargz");
    const b = medianOf("augur-estargz-redirect-each");
    lines.push(`- MEASURED: blob locations kept (augur-estargz) ${a?.toFixed(2) ?? "-"} s vs every Range request redirected (augur-estargz-redirect-each) ${b?.toFixed(2) ?? "-"} s${values.redirect ? "" : " (without --redirect the two should match)"}`);
  }
  for (const [ours, theirs] of pairs) {
    if (!results.some((r) => r.mode === ours) || !results.some((r) => r.mode === theirs)) continue;
    const a = medianOf(ours);
    const b = medianOf(theirs);
    lines.push(check(`${ours} no slower than ${theirs} in the same run (${a?.toFixed(2) ?? "-"} s vs ${b?.toFixed(2) ?? "-"} s)`, a === undefined || b === undefined ? undefined : a <= b));
  }
  if (augurModes.includes("augur-plain-registry")) {
    const s = medianOf("augur-plain-registry");
    lines.push(check("augur-plain-registry at most 0.10 of the full pull's time", s === undefined || !Number.isFinite(baseS) ? undefined : s <= 0.1 * baseS));
  }
  if (augurModes.includes("augur-shared-cluster") && augurModes.includes("augur-shared-first")) {
    const a = medianOf("augur-shared-cluster");
    const b = medianOf("augur-shared-first");
    lines.push(check(`augur-shared-cluster at most 0.6 of augur-shared-first (${sharedWorkload?.name} never run; ${a?.toFixed(2) ?? "-"} s vs ${b?.toFixed(2) ?? "-"} s: ${a !== undefined && b !== undefined ? (a / b).toFixed(2) : "-"})`, a === undefined || b === undefined ? undefined : a <= 0.6 * b));
  }
  if (augurModes.includes("augur-plain-history")) {
    const s = medianOf("augur-plain-history");
    lines.push(check("augur-plain-history at most 0.12 of the full pull's time", s === undefined || !Number.isFinite(baseS) ? undefined : s <= 0.12 * baseS));
    const runsOk = results.find((r) => r.mode === "augur-plain-history")?.runs.filter((x) => x.ok && x.prefetchRecall !== undefined) ?? [];
    const p = runsOk.length ? median(runsOk.map((x) => x.prefetchPrecision ?? NaN)) : undefined;
    const rc = runsOk.length ? median(runsOk.map((x) => x.prefetchRecall ?? NaN)) : undefined;
    lines.push(check(`augur-plain-history prefetch precision >= 0.9 (${p?.toFixed(2) ?? "-"})`, p === undefined ? undefined : p >= 0.9));
    lines.push(check(`augur-plain-history prefetch recall >= 0.9 (${rc?.toFixed(2) ?? "-"})`, rc === undefined ? undefined : rc >= 0.9));
  }
  if (augurModes.length > 0) {
    const rss = results.filter((r) => r.mode.startsWith("augur")).flatMap((r) => r.runs.filter((x) => x.ok).map((x) => x.augurPeakRss ?? 0));
    lines.push(check("augur peak RSS under 300 MB in every run", rss.length === 0 ? undefined : Math.max(...rss) < 300e6));
  }
  return lines;
}

function report(results: ModeResult[], meta: { rateMbit: number; latencyMs: number }): string {
  const base = results.find((r) => r.mode === "overlayfs");
  const baseOk =
    base && base.runs.length === runs && base.runs.every((r) => r.ok)
      ? median(base.runs.map((r) => r.readyS ?? NaN))
      : values["baseline-s"] !== undefined
        ? Number(values["baseline-s"])
        : NaN;
  const targetLines = targets(results, baseOk);
  const mb = (b: number): string => (b / 1e6).toFixed(1);
  const rows = results.map((r) => {
    const ok = r.runs.filter((x) => x.ok);
    const failed = r.runs.find((x) => !x.ok);
    if (failed || ok.length === 0) {
      const why = (failed?.error ?? "no runs").split("\n")[0]?.replace(/\|/g, "\\|").slice(0, 160);
      return `| ${r.mode} | FAILED | | | | | | ${why} |`;
    }
    const med = median(ok.map((x) => x.readyS ?? NaN));
    const pull = median(ok.map((x) => x.pullS ?? NaN));
    const bytes = median(ok.map((x) => x.bytesBeforeReady ?? 0));
    const rss = Math.max(...ok.map((x) => x.augurPeakRss ?? 0));
    const ratio = Number.isFinite(baseOk) ? (med / baseOk).toFixed(2) : "n/a";
    const all = ok.map((x) => (x.readyS ?? 0).toFixed(2)).join(", ");
    const pr = ok.filter((x) => x.prefetchRecall !== undefined);
    const figures = pr.length ? `${median(pr.map((x) => x.prefetchPrecision ?? NaN)).toFixed(2)} / ${median(pr.map((x) => x.prefetchRecall ?? NaN)).toFixed(2)}` : "-";
    return `| ${r.mode} | ${med.toFixed(2)} | ${ratio} | ${pull.toFixed(2)} | ${mb(bytes)} | ${figures} | ${rss ? `${(rss / 1e6).toFixed(0)} MB` : "-"} | runs: ${all} |`;
  });
  return [
    `## lazy-pull benchmark: ${workload?.name} (${new Date().toISOString()})`,
    "",
    `Workload: ${workload?.description}; ready marker \`${workload?.ready}\`.`,
    ...(results.some((r) => r.mode.startsWith("augur-shared"))
      ? [`The augur-shared-* modes run ${sharedWorkload?.name} (${sharedWorkload?.description}; layers ${sharedWorkload?.layers.join(", ")}), never run in the bench; their ratio column is still to ${workload?.name}'s full pull.`]
      : []),
    ...(!base && Number.isFinite(baseOk) ? [`Ratios are to a full pull of ${baseOk} s given with --baseline-s.`] : []),
    `Registry behind ${meta.rateMbit} Mbit/s (tc htb, both directions) + ${meta.latencyMs} ms per connection and per request (user-space proxy)${values.redirect ? ", every blob GET redirected to storage after one more round trip (--redirect)" : ""}. Median of ${runs} runs, each from a wiped state.`,
    "",
    "```",
    imageSummary(),
    "```",
    "",
    "| mode | median s to READY | ratio to overlayfs full pull | median pull s | MB fetched before READY | prefetch precision / recall at READY | augur peak RSS | notes |",
    "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ...rows,
    "",
    ...(targetLines.length > 0 ? [`Targets (the issue states them for the python image):`, "", ...targetLines, ""] : []),
  ].join("\n");
}

// ---------------------------------------------------------------- the registry's storage

/** The repository augur-plain-registry serves the image under: the same manifest and blobs, its own artifacts. */
/** The repository a registry mode serves the image under: its own, so no other mode finds its artifact. */
const fleetRepo = (repo: string, mode: Mode = "augur-plain-registry"): string => `${repo}-${mode === "augur-plain-registry-pinned" ? "pinned" : mode === "augur-plain-peer-registry" ? "peer" : "fleet"}`;
/** Modes whose image is served under a repository of their own (fleetRepo). */
const FLEET_MODES: readonly Mode[] = ["augur-plain-registry", "augur-plain-registry-pinned", "augur-plain-peer-registry"];

/**
 * A scratch copy of the registry storage the registry may write to: blobs
 * hard-linked (the registry never rewrites a blob file; new ones get new
 * paths), repositories copied (tags are links rewritten in place), and the
 * image's repository copied once more for each registry mode.
 */
async function scratchStorage(dir: string): Promise<string> {
  const from = join(registryStorage(cache), "docker", "registry", "v2");
  const to = join(dir, "storage", "docker", "registry", "v2");
  mkdirSync(to, { recursive: true });
  await runOk("cp", ["-al", join(from, "blobs"), join(to, "blobs")], { timeoutMs: 300_000 });
  await runOk("cp", ["-r", join(from, "repositories"), join(to, "repositories")], { timeoutMs: 300_000 });
  const repo = workload?.repo ?? "";
  if (existsSync(join(to, "repositories", repo))) {
    for (const mode of FLEET_MODES) {
      await runOk("cp", ["-r", join(to, "repositories", repo), join(to, "repositories", fleetRepo(repo, mode))], { timeoutMs: 300_000 });
    }
  }
  return join(dir, "storage");
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  if (values.build || !existsSync(registryStorage(cache))) {
    say("building and pushing the benchmark images (cached)");
    await pushDebianImages(await buildDebianImages(cache), cache);
  }
  const rateMbit = Number(values.rate);
  const latencyMs = Number(values.latency);
  const dir = scratchDir("augur-bench-reg-");
  say(`lazy-pull benchmark: image ${workload?.name}, modes ${modes.join(", ")}, ${runs} runs, ${rateMbit} Mbit/s, ${latencyMs} ms latency`);
  const reg = await startSlowRegistry(dir, await scratchStorage(dir), { rateMbit, latencyMs, writable: true, redirect: values.redirect });
  hostsDir = join(dir, "certs.d");
  mkdirSync(join(hostsDir, reg.host), { recursive: true });
  writeFileSync(join(hostsDir, reg.host, "hosts.toml"), `server = "http://${reg.host}"\n`);
  say(`registry in netns ${reg.netns.name} (${reg.netns.nsIp}:5000), clients use ${reg.host}${reg.front ? " (a front redirecting every blob GET to storage)" : ""}`);
  const results: ModeResult[] = [];
  try {
    for (const mode of modes) results.push(await benchMode(mode, reg));
  } finally {
    await reg.stop();
    await removeScratch(dir);
  }
  const md = report(results, { rateMbit, latencyMs });
  console.log("\n" + md);
  const outDir = join(cache, "results");
  mkdirSync(outDir, { recursive: true });
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const out = values.out ?? join(outDir, `lazy-pull-${workload?.name}-${stamp}.md`);
  writeFileSync(out, md);
  writeFileSync(out.replace(/\.md$/, "") + ".json", JSON.stringify({ image: workload?.name, rateMbit, latencyMs, runs, results }, null, 2));
  say(`results written to ${out} (and .json)`);
}

await main();
