// Two nodes, each with its own augur, containerd and cache: the first runs an
// image (plain and eStargz) and serves its cache (--serve-cache); the second
// (--peer) starts the same images from it, the registry asked only for
// manifests and configs. A peer that sends corrupted bytes is caught and the
// registry answers; containerd's own hosts.toml mirror setting pulls from the
// served cache too.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { AUGUR_BIN } from "../harness/augur.js";
import { rpull, startNode, stopNodes, type Node } from "../harness/node.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { freePort, removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";
import { estargzManifest, pushEstargzOf } from "../harness/estargz.js";

const FILES = [randomBytes(3 << 20), randomBytes(200_000), Buffer.from("small file\n")];
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");
const SUMS = FILES.map((c, i) => `${md5(c)}  /data/f${i}.bin`).join("\n") + "\n";
const READ = ["md5sum", ...FILES.map((_, i) => `/data/f${i}.bin`)];

let dir: string;
let registry: Registry;
let first: Node;
let second: Node;
let third: Node;
let synced: Node | undefined;
let indexOnly: Node | undefined;
let trickled: Node | undefined;
let published: Node | undefined;
let trickler: Server | undefined;
let liar: Server;
let servePort: number;
let image: BuiltImage;
const refs = { plain: "", estargz: "" };
let estargzLayers: string[] = [];

/** A node of this file: no prefetch and no native copies, so what it reads is what the container asks. */
const node = (name: string, extraArgs: string[]): Promise<Node> => startNode(dir, name, ["--no-prefetch", "--no-native-copy", ...extraArgs]);

async function status(n: Node): Promise<{ peers: { hits: number; bytes: number; distrusted: number } | null; serving: { servedBytes: number } | null }> {
  const r = await run("curl", ["-sf", "--unix-socket", n.augur.apiSocket, "http://augur/cache/status"]);
  return JSON.parse(r.stdout) as never;
}

/** Layer blob GETs the registry answered with bytes, from its access log. */
function blobGets(log: string, digests: readonly string[]): string[] {
  return [...log.matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" (\d{3}) (\d+)/g)]
    .filter((m) => digests.includes(m[1] as string) && (m[2] === "200" || m[2] === "206") && Number(m[3]) > 0)
    .map((m) => m[1] as string);
}

beforeAll(async () => {
  dir = scratchDir("as-peer-");
  registry = await startRegistry(dir);
  servePort = await freePort();
  first = await node("first", ["--serve-cache", `127.0.0.1:${servePort}`]);
  image = await buildImage(join(dir, "img"), {
    layers: [busyboxLayer(), [{ type: "dir", path: "data" }, ...FILES.map((c, i) => ({ type: "file" as const, path: `data/f${i}.bin`, content: c }))]],
    cmd: ["/bin/sh"],
  });
  refs.plain = `${registry.host}/peer/plain:1`;
  refs.estargz = `${registry.host}/peer/estargz:1`;
  pushImage(image, refs.plain);
  await pushEstargzOf(first.containerd, refs.plain, refs.estargz);
  const manifest = await estargzManifest(first.containerd, refs.estargz);
  estargzLayers = manifest.layers.map((l) => l.digest);
  // the first node runs both images: its cache now holds what they read
  for (const ref of [refs.plain, refs.estargz]) {
    const pulled = await rpull(first.containerd, ref);
    if (pulled.code !== 0) throw new Error(`rpull ${ref}: ${pulled.stderr}`);
    const out = await first.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, `first-${ref.includes("estargz") ? "e" : "p"}`, ...READ], 120_000);
    if (out !== SUMS) throw new Error(`first node read ${out}`);
  }
  second = await node("second", ["--peer", `http://127.0.0.1:${servePort}`]);
  // a peer that passes on the first node's cache with one byte of every body flipped
  liar = createServer((req, res) => {
    const up = request({ host: "127.0.0.1", port: servePort, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      let flipped = false;
      upRes.on("data", (c: Buffer) => {
        if (!flipped && (upRes.statusCode === 200 || upRes.statusCode === 206)) {
          c = Buffer.from(c);
          c[c.length >> 1] = (c[c.length >> 1] as number) ^ 0x5a;
          flipped = true;
        }
        res.write(c);
      });
      upRes.on("end", () => res.end());
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
  third = await node("third", ["--peer", `http://127.0.0.1:${(liar.address() as AddressInfo).port}`]);
}, 400_000);

afterAll(async () => {
  await stopNodes([published, trickled, indexOnly, synced, third, second, first]);
  await new Promise<void>((r) => (liar ? liar.close(() => r()) : r()));
  trickler?.closeAllConnections();
  await new Promise<void>((r) => (trickler ? trickler.close(() => r()) : r()));
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("a node with a warm peer", () => {
  it("starts a plain image and an eStargz image from the peer's cache, not the registry", async () => {
    const before = (await registry.settledLog()).length;
    for (const ref of [refs.plain, refs.estargz]) {
      const pulled = await rpull(second.containerd, ref);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(await second.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, `second-${ref.includes("estargz") ? "e" : "p"}`, ...READ], 120_000)).toBe(SUMS);
    }
    const log = (await registry.settledLog()).slice(before);
    // manifests and configs from the registry, no layer bytes
    expect(log).toMatch(/GET \/v2\/peer\/plain\/manifests\//);
    expect(blobGets(log, [...image.layerDigests, ...estargzLayers])).toEqual([]);
    const s = await status(second);
    expect(s.peers?.hits).toBeGreaterThan(0);
    expect(s.peers?.bytes).toBeGreaterThan(FILES[0]?.length as number);
    expect(s.peers?.distrusted).toBe(0);
    expect((await status(first)).serving?.servedBytes).toBe(s.peers?.bytes);
    // the peer holds the plain layers whole: each copied from it and checked against its digest,
    // then read with the peer's index (checked entry by entry), not indexed here
    const log2 = second.augur.proc.log();
    for (const d of image.layerDigests) {
      expect(log2).toMatch(new RegExp(`layer copied whole from a peer and verified layer=${d} .*from="peer http`));
      expect(log2).toMatch(new RegExp(`layer index from the registry; entries are checked against the tar as they are served layer=${d} source="peer http`));
    }
    expect(log2).not.toMatch(/layer streamed, verified and indexed/);
    const metrics = await run("curl", ["-sf", "--unix-socket", second.augur.apiSocket, "http://augur/metrics"]);
    expect(metrics.stdout).toMatch(/^augur_peer_fetched_bytes_total [1-9]\d*$/m);
  });

  it("with the image's artifact in the registry, its blobs and the plain layers' ranges come from the peer, checked against what the registry's artifact manifest names", async () => {
    // the same image under a repository of its own, so no other test here finds its artifact
    const ref = `${registry.host}/peer/published:1`;
    pushImage(image, ref);
    const pushed = await run(process.execPath, [AUGUR_BIN, "manifest", "push", "--root", first.augur.root, "--plain-http", ref]);
    expect(pushed.code, pushed.stderr).toBe(0);
    published = await node("published", ["--peer", `http://127.0.0.1:${servePort}`]);
    const before = (await registry.settledLog()).length;
    const pulled = await rpull(published.containerd, ref);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await published.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, "published", ...READ], 120_000)).toBe(SUMS);
    const log = (await registry.settledLog()).slice(before);
    // the artifact's manifest from the registry; its blobs (profile, indexes), kept in the first
    // node's cache by the push, and the layers' bytes from the peer
    expect(log).toMatch(/GET \/v2\/peer\/published\/manifests\/sha256-[0-9a-f]{64} /);
    expect(blobGets(log, image.layerDigests)).toEqual([]);
    const blobs = [...log.matchAll(/"GET \/v2\/peer\/published\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" (200|206)/g)].map((m) => m[1]);
    expect(blobs).toHaveLength(1); // containerd's fetch of the image config, nothing of augur's
    const augurLog = published.augur.proc.log();
    for (const d of image.layerDigests) {
      expect(augurLog).toMatch(new RegExp(`layer index from the registry; entries are checked against the tar as they are served layer=${d} source=127\\.0\\.0\\.1:\\d+/peer/published@sha256:`));
      // by range: the peer's whole blob is neither copied nor needed
      expect(augurLog).not.toMatch(new RegExp(`layer copied whole from a peer and verified layer=${d}`));
    }
    const s = await status(published);
    expect(s.peers?.hits).toBeGreaterThan(1);
    expect(s.peers?.bytes).toBeGreaterThan(FILES[0]?.length as number);
    expect(s.peers?.distrusted).toBe(0);
  });

  it("a peer that sends corrupted bytes is caught and the registry answers", async () => {
    const before = (await registry.settledLog()).length;
    for (const ref of [refs.plain, refs.estargz]) {
      const pulled = await rpull(third.containerd, ref);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(await third.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, `third-${ref.includes("estargz") ? "e" : "p"}`, ...READ], 120_000)).toBe(SUMS);
    }
    expect((await status(third)).peers?.distrusted).toBeGreaterThan(0);
    expect(third.augur.proc.log()).toMatch(/peer set aside; asking the registry instead/);
    expect(blobGets((await registry.settledLog()).slice(before), image.layerDigests).length).toBeGreaterThan(0);
  });

  it("containerd's own hosts.toml mirror setting pulls layers from the served cache", async () => {
    const hostsDir = join(dir, "certs.d");
    mkdirSync(join(hostsDir, registry.host), { recursive: true });
    writeFileSync(join(hostsDir, registry.host, "hosts.toml"), `server = "http://${registry.host}"\n\n[host."http://127.0.0.1:${servePort}"]\n  capabilities = ["pull"]\n`);
    const served = (await status(first)).serving?.servedBytes ?? 0;
    const before = (await registry.settledLog()).length;
    await second.containerd.ctrOk(["-n", "mirror", "images", "pull", "--hosts-dir", hostsDir, "--snapshotter", "overlayfs", refs.plain], 120_000);
    expect(blobGets((await registry.settledLog()).slice(before), image.layerDigests)).toEqual([]);
    expect((await status(first)).serving?.servedBytes).toBeGreaterThan(served);
    expect(await second.containerd.ctrOk(["-n", "mirror", "run", "--snapshotter", "overlayfs", "--rm", refs.plain, "mirror-run", ...READ], 120_000)).toBe(SUMS);
  });

  it("augur cache sync copies a peer's layers of an image; a node on that cache then needs no layer bytes from the registry", async () => {
    const cacheDir = join(dir, "synced-cache");
    const r = await run(process.execPath, [AUGUR_BIN, "cache", "sync", "--from", `http://127.0.0.1:${servePort}`, "--plain-http", "--cache-dir", cacheDir, "--json", refs.plain, refs.estargz]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { image: string; layers: { digest: string; result: string; bytes: number }[] }[];
    expect(report.map((x) => x.image)).toEqual([refs.plain, refs.estargz]);
    expect(report[0]?.layers.map((l) => l.result)).toEqual(image.layerDigests.map(() => "blob"));
    expect(report[0]?.layers.map((l) => l.bytes)).toEqual(image.layerSizes);
    expect(report[1]?.layers.map((l) => l.result)).toEqual(estargzLayers.map(() => "chunks"));
    // bad input is named
    const noPeer = await run(process.execPath, [AUGUR_BIN, "cache", "sync", "--cache-dir", cacheDir, refs.plain]);
    expect(noPeer.code).not.toBe(0);
    expect(noPeer.stderr).toMatch(/needs --from PEER/);

    synced = await node("synced", ["--cache-dir", cacheDir]);
    const before = (await registry.settledLog()).length;
    for (const ref of [refs.plain, refs.estargz]) {
      const pulled = await rpull(synced.containerd, ref);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(await synced.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, `synced-${ref.includes("estargz") ? "e" : "p"}`, ...READ], 120_000)).toBe(SUMS);
    }
    expect(blobGets((await registry.settledLog()).slice(before), [...image.layerDigests, ...estargzLayers])).toEqual([]);
  });

  it("a peer holding only a layer's index: the layer is opened with it, its bytes come from the registry by range", async () => {
    const big = image.layerDigests[1] as string;
    // the first node's copy of the big plain layer goes; its index stays
    rmSync(join(dir, "first", "augur-root", "cache", "blobs", "sha256", big.slice(7)));
    const verified = await run(process.execPath, [AUGUR_BIN, "cache", "verify", "--cache-dir", join(dir, "first", "augur-root", "cache")]);
    expect(verified.code, verified.stderr).toBe(0);
    indexOnly = await node("index-only", ["--peer", `http://127.0.0.1:${servePort}`]);
    const before = (await registry.settledLog()).length;
    const pulled = await rpull(indexOnly.containerd, refs.plain);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await indexOnly.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", refs.plain, "index-only", ...READ], 120_000)).toBe(SUMS);
    expect(indexOnly.augur.proc.log()).toMatch(new RegExp(`layer index from the registry; entries are checked against the tar as they are served layer=${big} source="peer http`));
    // the peer wrote the span digests, so it does not also send the bytes: the registry does, by range
    const gets = [...(await registry.settledLog()).slice(before).matchAll(new RegExp(`"GET /v2/peer/plain/blobs/${big} HTTP/[\\d.]+" (\\d{3}) (\\d+)`, "g"))];
    expect(gets.length).toBeGreaterThan(0);
    expect(gets.every((m) => m[1] === "206")).toBe(true);
    // (the container reads every file, so all of the layer, each byte once)
    expect(gets.reduce((n, m) => n + Number(m[2]), 0)).toBeLessThanOrEqual(image.layerSizes[1] as number);
  });

  it("a peer that trickles a whole blob does not hold the layer: reads go to the registry meanwhile", async () => {
    // passes the first node's cache on, but a whole blob comes one byte every 200 ms
    trickler = createServer((req, res) => {
      const whole = req.method === "GET" && /\/blobs\/sha256:/.test(req.url ?? "") && !req.headers.range;
      const up = request({ host: "127.0.0.1", port: servePort, path: req.url, method: req.method, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        if (!whole || upRes.statusCode !== 200) return void upRes.pipe(res);
        upRes.pause();
        const tick = setInterval(() => {
          const b = upRes.read(1) as Buffer | null;
          if (b) res.write(b);
        }, 200);
        res.on("close", () => clearInterval(tick));
      });
      up.on("error", () => res.destroy());
      req.pipe(up);
    });
    await new Promise<void>((r) => trickler?.listen(0, "127.0.0.1", r));
    trickled = await node("trickled", ["--peer", `http://127.0.0.1:${(trickler.address() as AddressInfo).port}`]);
    const base = image.layerDigests[0] as string; // the busybox layer: the first node holds it whole
    const before = (await registry.settledLog()).length;
    const pulled = await rpull(trickled.containerd, refs.plain);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await trickled.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", refs.plain, "trickled", ...READ], 60_000)).toBe(SUMS);
    // the copy is still crawling: the container read the layer from the registry
    expect(trickled.augur.proc.log()).not.toContain(`layer copied whole from a peer and verified layer=${base}`);
    expect((await registry.settledLog()).slice(before)).toMatch(new RegExp(`"GET /v2/peer/plain/blobs/${base} HTTP/[\\d.]+" 206 \\d+`));
  });
});
