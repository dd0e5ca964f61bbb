// Hostile layers through containerd: a small blob that inflates to hundreds
// of MB must cost augur bounded memory and time, keep it answering while it
// happens, and end in one clear log line naming the problem.
// - An eStargz layer whose footer puts the TOC at offset 0 of a gzip bomb:
//   refused at once (bounded fetch, bounded inflate off the event loop), and
//   containerd pulls the layer itself.
// - A manifest claiming a layer is smaller than its blob: the layer fails
//   at the claim, and the cache keeps no more than it.
// - A plain layer whose PAX header claims 512 MiB: the layer fails at that
//   header, without buffering it, and stays failed for a while rather than
//   being streamed again by every lookup.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { createGzip } from "node:zlib";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { estargzFooter, ustarHeader } from "../harness/hostile-blobs.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, layerTar, pushImage, putBlob, writeImageLayout, type BuiltImage } from "../../scripts/images/oci-image.js";
import { gzipSync } from "node:zlib";

const MiB = 1 << 20;
/** What each bomb inflates to: ten times the eStargz TOC limit, 512 times the tar header limit. */
const BOMB_BYTES = 512 * MiB;
/** How much augur's peak RSS may grow over the whole file (it was 6.7 GB for the TOC bomb, 3.1 GB for the PAX one). */
const RSS_GROWTH_LIMIT = 200 * MiB;
/**
 * How much more augur may still hold once the hostile layers are done (it held 1.65 GB after the PAX
 * one); what it legitimately keeps counts too: the good layers this file mounted, their read caches.
 */
const RSS_KEPT_LIMIT = 128 * MiB;

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let peakBefore = 0;
let rssBefore = 0;

/** gzip of `head` followed by `zeros` zero bytes, streamed (never held uncompressed); and the sha256 of what it inflates to. */
async function gzipWithZeros(head: Buffer, zeros: number): Promise<{ blob: Buffer; diffId: string }> {
  const gz = createGzip({ level: 9 });
  const out: Buffer[] = [];
  gz.on("data", (b: Buffer) => out.push(b));
  const done = new Promise<void>((resolve, reject) => gz.on("end", resolve).on("error", reject));
  const hash = createHash("sha256");
  const feed = async (b: Buffer): Promise<void> => {
    hash.update(b);
    if (!gz.write(b)) await new Promise((r) => gz.once("drain", r));
  };
  await feed(head);
  const block = Buffer.alloc(MiB);
  for (let left = zeros; left > 0; left -= MiB) await feed(left >= MiB ? block : block.subarray(0, left));
  gz.end();
  await done;
  return { blob: Buffer.concat(out), diffId: `sha256:${hash.digest("hex")}` };
}



/** An image of busybox and `top` (a layer blob with its diff ID and annotations). */
async function imageWith(name: string, top: { blob: Buffer; diffId: string; annotations?: Record<string, string> }): Promise<BuiltImage & { ref: string }> {
  const d = join(dir, name);
  const tools = await layerTar(busyboxLayer());
  const toolsGz = gzipSync(tools);
  const layers = [
    { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: putBlob(d, toolsGz), size: toolsGz.length },
    { mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: putBlob(d, top.blob), size: top.blob.length, ...(top.annotations ? { annotations: top.annotations } : {}) },
  ];
  const diffIds = [`sha256:${createHash("sha256").update(tools).digest("hex")}`, top.diffId];
  const config = Buffer.from(JSON.stringify({ architecture: "amd64", os: "linux", config: { Cmd: ["/bin/sh"] }, rootfs: { type: "layers", diff_ids: diffIds } }));
  const manifestDigest = writeImageLayout(d, config, layers, "latest");
  const image = { dir: d, manifestDigest, layerDigests: layers.map((l) => l.digest), diffIds, layerSizes: layers.map((l) => l.size) };
  const ref = `${registry.host}/hostile/${name}:1`;
  pushImage(image, ref);
  return { ...image, ref };
}

/** augur's peak resident set so far (VmHWM), in bytes. */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${augur.proc.pid}/status`, "utf8"));
  if (!m) throw new Error("no VmHWM in /proc/<augur>/status");
  return Number(m[1]) * 1024;
}

/** augur's resident set now (VmRSS), in bytes. */
function currentRss(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${augur.proc.pid}/status`, "utf8"));
  if (!m) throw new Error("no VmRSS in /proc/<augur>/status");
  return Number(m[1]) * 1024;
}

/** Runs `work` while asking augur's /healthz every 100 ms; returns the slowest answer (ms) and what work returned. */
async function whileProbing<T>(work: () => Promise<T>): Promise<{ slowestMs: number; result: T }> {
  let slowest = 0;
  let stop = false;
  const probe = (async () => {
    while (!stop) {
      const t = performance.now();
      const r = await run("curl", ["-sf", "-m", "30", "--unix-socket", augur.apiSocket, "http://augur/healthz"]);
      if (r.code !== 0) throw new Error(`healthz failed: ${r.stderr}`);
      slowest = Math.max(slowest, performance.now() - t);
      await new Promise((res) => setTimeout(res, 100));
    }
  })();
  try {
    return { result: await work(), slowestMs: slowest };
  } finally {
    stop = true;
    await probe;
  }
}

beforeAll(async () => {
  dir = scratchDir("as-hostile-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy"] });
  containerd = await startContainerd(dir, augur.socket);
  peakBefore = peakRss();
  rssBefore = currentRss();
}, 120_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("hostile layers through containerd", () => {
  it("an eStargz footer pointing at a gzip bomb is refused at once; containerd pulls the layer itself", async () => {
    // the bomb: 512 MiB of zeros (an empty tar to containerd) in ~0.5 MB, with a footer putting the TOC at its start
    const bomb = await gzipWithZeros(Buffer.alloc(0), BOMB_BYTES);
    const blob = Buffer.concat([bomb.blob, estargzFooter(0)]);
    expect(blob.length).toBeLessThan(2 * MiB);
    const image = await imageWith("toc-bomb", { blob, diffId: bomb.diffId, annotations: { "containerd.io/snapshot/stargz/toc.digest": `sha256:${"0".repeat(64)}` } });
    const { slowestMs, result } = await whileProbing(() => run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", image.ref], { timeoutMs: 180_000 }));
    expect(result.code, result.stderr).toBe(0);
    expect(slowestMs).toBeLessThan(2000);
    const line = augur.proc.log().split("\n").find((l) => l.includes(image.layerDigests[1] as string) && l.includes("TOC decompresses to more than the 52428800 bytes allowed"));
    expect(line, augur.proc.log().slice(-3000)).toBeDefined();
    // containerd unpacked the layer itself, and the image runs
    const out = await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", image.ref, "toc-bomb-run", "sh", "-c", "echo ran"], 120_000);
    expect(out.trim()).toBe("ran");
    expect(peakRss() - peakBefore).toBeLessThan(RSS_GROWTH_LIMIT);
  }, 300_000);

  it("a PAX header claiming 512 MiB fails its layer at that header, with one line naming it", async () => {
    const bomb = await gzipWithZeros(ustarHeader("././@PaxHeader", "x", BOMB_BYTES), BOMB_BYTES + 1024);
    expect(bomb.blob.length).toBeLessThan(2 * MiB);
    const image = await imageWith("pax-bomb", bomb);
    const { slowestMs, result } = await whileProbing(async () => {
      const pulled = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", image.ref], { timeoutMs: 180_000 });
      expect(pulled.code, pulled.stderr).toBe(0);
      // the container's root lies on the layer: it cannot start, and it fails rather than hang
      return containerd.ctr(["run", "--snapshotter", "augur", "--rm", image.ref, "pax-bomb-run", "ls", "/"], 120_000);
    });
    expect(result.code).not.toBe(0);
    expect(slowestMs).toBeLessThan(2000);
    const claim = `pax header at offset 0 claims ${BOMB_BYTES} bytes, more than the 1048576 allowed`;
    const lines = augur.proc.log().split("\n").filter((l) => l.includes(claim));
    expect(lines.length, augur.proc.log().slice(-3000)).toBeGreaterThan(0);
    expect(lines[0]).toContain(image.layerDigests[1] as string);
    // the failure is remembered: the container's many lookups did not stream the layer again
    const gets = [...(await registry.settledLog()).matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" 200 /g)].filter((m) => m[1] === image.layerDigests[1]);
    expect(gets).toHaveLength(1);
    expect(peakRss() - peakBefore).toBeLessThan(RSS_GROWTH_LIMIT);
  }, 300_000);
  it("a manifest claiming a layer is smaller than its blob: the layer fails naming the claim, and no more than it is kept", async () => {
    const image = await buildImage(join(dir, "size"), { layers: [busyboxLayer(), [{ type: "file", path: "big.bin", content: randomBytes(1 << 20) }]], cmd: ["/bin/sh"] });
    pushImage(image, `${registry.host}/hostile/size:good`);
    const manifest = JSON.parse(readFileSync(join(image.dir, "blobs", "sha256", image.manifestDigest.slice(7)), "utf8")) as { layers: { size: number }[] };
    const claim = (manifest.layers[1]?.size ?? 0) - 4096;
    (manifest.layers[1] as { size: number }).size = claim;
    const body = join(dir, "lying-manifest.json");
    writeFileSync(body, JSON.stringify(manifest));
    const put = await run("curl", ["-sf", "-X", "PUT", "-H", "content-type: application/vnd.oci.image.manifest.v1+json", "--data-binary", `@${body}`, `http://${registry.host}/v2/hostile/size/manifests/lie`]);
    expect(put.code, put.stderr).toBe(0);
    const ref = `${registry.host}/hostile/size:lie`;
    const pulled = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
    expect(pulled.code, pulled.stderr).toBe(0);
    const ran = await containerd.ctr(["run", "--snapshotter", "augur", "--rm", ref, "size-run", "md5sum", "/big.bin"], 120_000);
    expect(ran.code, ran.stdout).not.toBe(0);
    const digest = image.layerDigests[1] as string;
    const line = augur.proc.log().split("\n").find((l) => l.includes(digest) && l.includes(`blob is longer than the ${claim} bytes the manifest says`));
    expect(line, augur.proc.log().slice(-3000)).toBeDefined();
    // nothing of the layer was kept as if it were the blob
    expect(existsSync(join(augur.root, "cache", "blobs", "sha256", digest.slice(7)))).toBe(false);
  }, 300_000);

  it("gives back the memory the hostile layers made it take", async () => {
    // after them all, within a few seconds (a collection or two), augur is about where it started
    const deadline = Date.now() + 20_000;
    let grown = currentRss() - rssBefore;
    while (grown >= RSS_KEPT_LIMIT && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 500));
      grown = currentRss() - rssBefore;
    }
    expect(grown).toBeLessThan(RSS_KEPT_LIMIT);
  }, 60_000);
});
