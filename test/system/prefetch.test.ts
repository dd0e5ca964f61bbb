// Predictive prefetch through containerd. A workload runs once and is traced;
// the node's data cache is wiped (traces kept, as after a cache eviction or on
// a node that copied another's history); when it runs again, what it reads
// must already be fetched when it reads it, from augur's own figures and the
// registry's access log. A second image that shares the base layer, never run,
// gets the base layer's files prefetched from the first one's history. A
// wrong prediction costs bytes, never correctness, and a plan never fetches
// more than its budget. Native copies are off so every run reads through FUSE.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes, createHash } from "node:crypto";
import { cpSync, createReadStream, mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage, type LayerEntry } from "../../scripts/images/oci-image.js";
import { buildTarIndex } from "../../snapshotter/layer/tar-index.js";
import { parseTarIndex } from "../../snapshotter/layer/tar-index-codec.js";
import { NEAR_ENOUGH } from "../../snapshotter/layer/access-points.js";

const FILES = 240;
const SIZE = 16 << 10;
/** Incompressible base files, so spans and bytes are what they look like. */
const content = Array.from({ length: FILES }, () => randomBytes(SIZE));
const name = (i: number): string => `data/f${String(i).padStart(3, "0")}`;
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

const tools: LayerEntry[] = busyboxLayer();
const base: LayerEntry[] = [{ type: "dir", path: "data" }, ...content.map((c, i): LayerEntry => ({ type: "file", path: name(i), content: c }))];
const app = (tag: string): LayerEntry[] => [{ type: "dir", path: "app" }, { type: "file", path: `app/${tag}.txt`, content: randomBytes(64 << 10) }];
/** What workload A reads: 60 files of the first half of the base layer, in a scattered fixed order. */
const readsA = Array.from({ length: 60 }, (_, k) => (k * 7) % (FILES / 2));
/** A different workload on the same image: files of the last quarter, which A never reads (spans of their own). */
const readsC = Array.from({ length: 40 }, (_, k) => FILES - 60 + k);
const script = (files: number[], tag: string): string => `md5sum ${files.map((i) => `/${name(i)}`).join(" ")} /app/${tag}.txt | cut -d' ' -f1 | md5sum | cut -d' ' -f1`;
const expected = (files: number[], own: Buffer): string => md5(Buffer.from([...files.map((i) => md5(content[i] as Buffer)), md5(own)].map((h) => `${h}\n`).join("")));

interface LayerStatus {
  layer: string;
  readHitBytes: number;
  readMissBytes: number;
  aheadBytes: number;
  predictedBytes: number;
  predictedUsedBytes: number;
}
interface CacheStatus {
  layers: LayerStatus[];
  prefetch: { ahead: { bytes: Record<"soon" | "later" | "speculative", number>; usedBy: Record<"soon" | "later" | "speculative", number> } };
}

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let imageA: BuiltImage;
let imageB: BuiltImage;
const refs = { a: "", b: "" };
const appContent: Record<string, Buffer> = {};

async function status(): Promise<CacheStatus> {
  const r = await run("curl", ["-sf", "--unix-socket", augur.apiSocket, "http://augur/cache/status"]);
  if (r.code !== 0) throw new Error(`GET /cache/status failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as CacheStatus;
}
/** The layer of data files (the tools layer is below it). */
const baseDigest = (): string => imageA.layerDigests[1] as string;
const baseLayer = (s: CacheStatus): LayerStatus => {
  const l = s.layers.find((x) => x.layer === baseDigest());
  if (!l) throw new Error(`base layer ${baseDigest()} is not mounted`);
  return l;
};

/** Stops augur, drops the cached layer data (indexes and traces stay), starts it again with `args`. */
async function wipeDataAndRestart(args: string[] = []): Promise<void> {
  await augur.stop();
  for (const d of ["blobs", "chunks"]) rmSync(join(augur.root, "cache", d), { recursive: true, force: true });
  augur = await startAugur(dir, { root: augur.root, socket: augur.socket, extraArgs: ["--no-native-copy", ...args], logName: `augur-${Date.now()}.log` });
  await containerd.reachSnapshotter();
}

/** Registry bytes sent for blob GETs of `digest` in access-log text. */
function blobBytes(log: string, digest: string): number {
  let total = 0;
  for (const m of log.matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" (\d{3}) (\d+)/g)) if (m[1] === digest && (m[2] === "200" || m[2] === "206")) total += Number(m[3]);
  return total;
}

const ctrRun = async (ref: string, id: string, files: number[], tag: string): Promise<string> =>
  (await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, id, "sh", "-c", script(files, tag)], 120_000)).trim();

beforeAll(async () => {
  dir = scratchDir("as-prefetch-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy"] });
  containerd = await startContainerd(dir, augur.socket);
  const layersA = app("a");
  const layersB = app("b");
  appContent.a = (layersA[1] as { content: Buffer }).content;
  appContent.b = (layersB[1] as { content: Buffer }).content;
  imageA = await buildImage(join(dir, "a"), { layers: [tools, base, layersA], cmd: ["/bin/sh"] });
  imageB = await buildImage(join(dir, "b"), { layers: [tools, base, layersB], cmd: ["/bin/sh"] });
  refs.a = `${registry.host}/prefetch/a:1`;
  refs.b = `${registry.host}/prefetch/b:1`;
  pushImage(imageA, refs.a);
  pushImage(imageB, refs.b);
  const r = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", refs.a], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`rpull: ${r.stderr}`);
  // the first run: traced (first contact: the layers stream whole)
  expect(await ctrRun(refs.a, "a-first", readsA, "a")).toBe(expected(readsA, appContent.a));
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("predictive prefetch through containerd", () => {
  it("once the first run has gone, the base layer's index has access points where it began reading, and only there", async () => {
    // the round starts when containerd deletes the container; wait for it to finish
    let st: { rounds: number; running: boolean; pending: number; added: number } | undefined;
    for (const deadline = Date.now() + 60_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      st = (await status() as unknown as { indexRefinement: typeof st }).indexRefinement;
      if (st && st.rounds > 0 && !st.running && st.pending === 0) break;
    }
    expect(st?.rounds).toBeGreaterThan(0);
    expect(st?.added).toBeGreaterThan(0);
    const hex = baseDigest().slice("sha256:".length);
    const refined = parseTarIndex(readFileSync(join(augur.root, "cache", "indexes", "sha256", hex)));
    const plain = await buildTarIndex(createReadStream(join(imageA.dir, "blobs", "sha256", hex)), { digest: baseDigest(), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" });
    const points = refined.spans.map((x) => x.out);
    // where each file's tar header begins: reads from a file's start get a point before its header
    const headerAt = (i: number): number => refined.entries.find((e) => e.path.replace(/^\.\//, "") === name(i))?.header ?? -1;
    const pointBefore = (at: number): number => Math.max(...points.filter((p) => p <= at));
    // every file A read starts at most NEAR_ENOUGH after a point (random data: deflate blocks of ~16 KiB)
    for (const i of readsA) expect(headerAt(i) - pointBefore(headerAt(i)), name(i)).toBeLessThanOrEqual(NEAR_ENOUGH);
    // the old points are all still there; the new ones lie in the part of the layer A read
    const old = new Set(plain.spans.map((x) => x.out));
    for (const p of old) expect(points).toContain(p);
    const added = points.filter((p) => !old.has(p));
    expect(added.length).toBeGreaterThan(5);
    const lastRead = Math.max(...readsA.map(headerAt));
    for (const p of added) expect(p).toBeLessThanOrEqual(lastRead);
    // and the layer serves the same bytes with it: the next test runs A from this index
  });

  it("a workload run again on an emptied cache finds at least 90% of what it reads already fetched", async () => {
    await wipeDataAndRestart();
    const logFrom = (await registry.settledLog()).length;
    const before = baseLayer(await status());
    expect(await ctrRun(refs.a, "a-again", readsA, "a")).toBe(expected(readsA, appContent.a as Buffer));
    const after = baseLayer(await status());
    const hit = after.readHitBytes - before.readHitBytes;
    const miss = after.readMissBytes - before.readMissBytes;
    expect(hit + miss).toBeGreaterThan(readsA.length * SIZE * 0.9); // it did read the files
    expect(hit / (hit + miss)).toBeGreaterThanOrEqual(0.9);
    // the registry agrees: the base layer's bytes came in this run (the cache was empty), about as many as augur says it fetched
    const log = (await registry.settledLog()).slice(logFrom);
    const sent = blobBytes(log, baseDigest());
    expect(sent).toBeGreaterThanOrEqual(hit);
    // 60 files scattered over the layer, fetched ahead with several ranges a request: far fewer requests than files
    const gets = [...log.matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" 206 /g)].filter((m) => m[1] === baseDigest()).length;
    expect(gets).toBeGreaterThan(0);
    expect(gets).toBeLessThan(readsA.length / 3);
    const ranges = (await status() as unknown as { rangeRequests: { multiRequests: number; multiRanges: number } }).rangeRequests;
    expect(ranges.multiRanges).toBeGreaterThan(ranges.multiRequests);
    expect(sent).toBeLessThanOrEqual(after.aheadBytes - before.aheadBytes + miss + 64 * 1024);
    // the same figures for Prometheus, and how long FUSE operations took
    const metrics = (await run("curl", ["-sf", "--unix-socket", augur.apiSocket, "http://augur/metrics"])).stdout;
    const value = (line: RegExp): number => Number(metrics.split("\n").find((l) => line.test(l))?.split(" ").pop());
    expect(value(/^augur_read_bytes_total\{result="hit"\} /)).toBeGreaterThanOrEqual(hit);
    expect(value(/^augur_prefetch_fetched_bytes_total\{reason="soon"\} /) + value(/^augur_prefetch_fetched_bytes_total\{reason="later"\} /)).toBeGreaterThan(0);
    expect(value(/^augur_fuse_operation_duration_seconds_count\{op="read"\} /)).toBeGreaterThan(readsA.length);
  }, 180_000);

  it("a second image sharing the base layer, never run, gets the base layer's files prefetched from the first one's history", async () => {
    await wipeDataAndRestart();
    const r = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", refs.b], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).toBe(0);
    const before = baseLayer(await status());
    expect(await ctrRun(refs.b, "b-first", readsA, "b")).toBe(expected(readsA, appContent.b as Buffer));
    const after = baseLayer(await status());
    const hit = after.readHitBytes - before.readHitBytes;
    const miss = after.readMissBytes - before.readMissBytes;
    expect(hit / (hit + miss)).toBeGreaterThanOrEqual(0.9);
  }, 180_000);

  it("with --predictor gru, the network trained in the background on the traces prefetches the workload's reads", async () => {
    await wipeDataAndRestart(["--predictor", "gru"]);
    // it trains at start, in a worker thread; plans made before it has trained predict nothing
    let training: { traces: number } | null = null;
    for (const deadline = Date.now() + 60_000; !training && Date.now() < deadline; await new Promise((r) => setTimeout(r, 200))) {
      const p = (await status() as unknown as { prefetch: { predictor: string; training: { traces: number } | null } }).prefetch;
      expect(p.predictor).toBe("gru");
      training = p.training;
    }
    expect(training?.traces).toBeGreaterThanOrEqual(3);
    const before = baseLayer(await status());
    expect(await ctrRun(refs.a, "a-gru", readsA, "a")).toBe(expected(readsA, appContent.a as Buffer));
    const after = baseLayer(await status());
    const hit = after.readHitBytes - before.readHitBytes;
    const miss = after.readMissBytes - before.readMissBytes;
    expect(hit + miss).toBeGreaterThan(readsA.length * SIZE * 0.9);
    expect(hit / (hit + miss)).toBeGreaterThanOrEqual(0.9);
    expect(after.predictedUsedBytes - before.predictedUsedBytes).toBeGreaterThan(readsA.length * SIZE * 0.5);
  }, 180_000);

  it("a wrong prediction costs bytes, never correctness, and a plan keeps within its budget", async () => {
    const budget = 2 << 20; // the tools layer and a few of the data layer's spans, not all of what A read
    await wipeDataAndRestart(["--prefetch-budget", String(budget)]);
    const before = await status();
    // C runs on A's image but reads data files A never read: A's history predicts the wrong ones
    expect(await ctrRun(refs.a, "c-wrong", readsC, "a")).toBe(expected(readsC, appContent.a as Buffer));
    const after = await status();
    const planned = (s: CacheStatus): number => s.prefetch.ahead.bytes.soon + s.prefetch.ahead.bytes.later;
    expect(planned(after) - planned(before)).toBeGreaterThan(0);
    expect(planned(after) - planned(before)).toBeLessThanOrEqual(budget);
    // in the data layer, what the plan fetched (A's files) went unused
    const data = { before: baseLayer(before), after: baseLayer(after) };
    expect(data.after.predictedBytes - data.before.predictedBytes).toBeGreaterThan(0);
    expect(data.after.predictedUsedBytes - data.before.predictedUsedBytes).toBe(0);
  }, 180_000);

  it("first contact without an index streams the layers one at a time, in the order the workload reads them", async () => {
    // a node that has the traces but no data and no indexes
    const d2 = join(dir, "node2");
    mkdirSync(d2);
    cpSync(join(augur.root, "traces"), join(d2, "r", "traces"), { recursive: true });
    const augur2 = await startAugur(d2, { root: join(d2, "r"), extraArgs: ["--no-native-copy"] });
    const containerd2 = await startContainerd(d2, augur2.socket).catch(async (err: unknown) => {
      await augur2.stop();
      throw err;
    });
    try {
      const from = (await registry.settledLog()).length;
      const r = await run("ctr-remote", ["--address", containerd2.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", refs.a], { timeoutMs: 120_000 });
      expect(r.code, r.stderr).toBe(0);
      const out = await containerd2.ctrOk(["run", "--snapshotter", "augur", "--rm", refs.a, "a-node2", "sh", "-c", script(readsA, "a")], 120_000);
      expect(out.trim()).toBe(expected(readsA, appContent.a as Buffer));
      // whole-blob GETs (no Range), in the order the registry finished them
      const finished = [...(await registry.settledLog()).slice(from).matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" 200 (\d+)/g)]
        .map((m) => m[1] as string)
        .filter((d) => imageA.layerDigests.includes(d));
      // A reads the tools layer first (sh), then the data files, then its app file: streamed in that order,
      // so the tiny app layer, which all at once would have finished first, comes last
      expect(finished).toEqual(imageA.layerDigests);
    } finally {
      await containerd2.stop();
      await augur2.stop();
    }
  }, 180_000);
});
