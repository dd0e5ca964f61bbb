// The cache served to peers over the OCI blob API, the peer client, and what
// happens to bytes that fail their check: a spoiled cache file is dropped and
// fetched again, a peer that sent bad bytes is set aside and the registry asked.
import { afterEach, describe, expect, it } from "vitest";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createServer, request, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHash, randomBytes } from "node:crypto";
import type { AddressInfo } from "node:net";
import { LayerCache } from "../../../snapshotter/cache/layer-cache.js";
import { CachedBlob } from "../../../snapshotter/fetch/cached-blob.js";
import { peerFirst } from "../../../snapshotter/fetch/peer-first.js";
import { UnitFetcher, type UnitFormat } from "../../../snapshotter/fetch/unit-fetcher.js";
import { LayerVerificationError } from "../../../snapshotter/fetch/verification.js";
import { BlobServer, parseRange } from "../../../snapshotter/peer/blob-server.js";
import { Peers } from "../../../snapshotter/peer/peers.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});
const newDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "augur-peer-"));
  cleanups.push(() => rmSync(d, { recursive: true, force: true }));
  return d;
};
const sha = (b: Buffer): string => createHash("sha256").update(b).digest("hex");
const digestOf = (b: Buffer): string => `sha256:${sha(b)}`;

async function serving(cache: LayerCache, concurrency?: number): Promise<string> {
  const server = new BlobServer(cache, concurrency === undefined ? {} : { concurrency });
  const { port } = await server.listen("127.0.0.1:0");
  cleanups.push(() => server.close());
  return `http://127.0.0.1:${port}`;
}

function http(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? "GET", headers: opts.headers ?? {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on("error", reject);
    req.end();
  });
}

/** Units of 1 KiB checked against their sha256, like an index's spans. */
function unitsOf(data: Buffer, digest: string): UnitFormat<Buffer> {
  const size = 1024;
  const sums = Array.from({ length: Math.ceil(data.length / size) }, (_, i) => sha(data.subarray(i * size, (i + 1) * size)));
  return {
    digest, count: sums.length,
    bounds: (i) => ({ start: i * size, end: Math.min(data.length, (i + 1) * size) }),
    verify: (i, bytes) => {
      if (sha(bytes) !== sums[i]) throw new LayerVerificationError(digest, `unit ${i} digest mismatch`);
      return bytes;
    },
  };
}
const demandOnly = { demand: <T>(fn: () => Promise<T>) => fn(), submit: () => undefined };

describe("BlobServer", () => {
  it("serves whole cached blobs, ranges its chunks cover, and nothing else", async () => {
    const cache = new LayerCache(newDir(), 1 << 20);
    const whole = randomBytes(5000);
    const w = cache.blobWriter(digestOf(whole));
    await w.write(whole);
    await w.commit();
    const chunked = digestOf(randomBytes(8));
    const part = randomBytes(3000);
    await cache.storeRange(chunked, 1000, part.subarray(0, 1000));
    await cache.storeRange(chunked, 2000, part.subarray(1000, 3000));
    const base = await serving(cache);

    expect((await http(`${base}/v2/`)).status).toBe(200);
    const head = await http(`${base}/v2/library/python/blobs/${digestOf(whole)}`, { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe("5000");
    expect(head.headers["docker-content-digest"]).toBe(digestOf(whole));
    const got = await http(`${base}/v2/a/b/blobs/${digestOf(whole)}`);
    expect(got.body.equals(whole)).toBe(true);
    const ranged = await http(`${base}/v2/x/blobs/${digestOf(whole)}`, { headers: { range: "bytes=100-199" } });
    expect(ranged.status).toBe(206);
    expect(ranged.headers["content-range"]).toBe("bytes 100-199/5000");
    expect(ranged.body.equals(whole.subarray(100, 200))).toBe(true);
    expect((await http(`${base}/v2/x/blobs/${digestOf(whole)}`, { headers: { range: "bytes=4990-" } })).body.equals(whole.subarray(4990))).toBe(true);
    expect((await http(`${base}/v2/x/blobs/${digestOf(whole)}`, { headers: { range: "bytes=6000-6001" } })).status).toBe(416);

    const covered = await http(`${base}/v2/x/blobs/${chunked}`, { headers: { range: "bytes=1500-2499" } });
    expect(covered.status).toBe(206);
    expect(covered.body.equals(part.subarray(500, 1500))).toBe(true);
    expect((await http(`${base}/v2/x/blobs/${chunked}`, { headers: { range: "bytes=0-1500" } })).status).toBe(404); // 0-999 is not here
    expect((await http(`${base}/v2/x/blobs/${chunked}`)).status).toBe(404); // not whole
    const ranges = JSON.parse((await http(`${base}/augur/v1/ranges/${chunked}`)).body.toString()) as { ranges: unknown; size: unknown };
    expect(ranges).toEqual({ digest: chunked, size: null, ranges: [[1000, 4000]] });

    // nothing but content by digest, read-only
    expect((await http(`${base}/v2/_catalog`)).status).toBe(404);
    expect((await http(`${base}/v2/x/manifests/latest`)).status).toBe(404);
    expect((await http(`${base}/v2/x/blobs/sha256:nothex`)).status).toBe(404);
    expect((await http(`${base}/v2/x/blobs/${digestOf(whole)}/../../etc`)).status).toBe(404);
    expect((await http(`${base}/v2/x/blobs/uploads/`, { method: "POST" })).status).toBe(405);
    // a Range it does not take (several ranges) is ignored, as HTTP allows: the whole blob
    const several = await http(`${base}/v2/x/blobs/${digestOf(whole)}`, { headers: { range: "bytes=1-2,5-6" } });
    expect(several.status).toBe(200);
    expect(several.body.equals(whole)).toBe(true);
    // evicted: not served any more
    await cache.evictLayer(digestOf(whole));
    expect((await http(`${base}/v2/x/blobs/${digestOf(whole)}`)).status).toBe(404);
  });

  it("answers 503 beyond its concurrency", async () => {
    const base = await serving(new LayerCache(newDir(), 1 << 20), 0);
    const r = await http(`${base}/v2/`);
    expect(r.status).toBe(503);
    expect(r.headers["retry-after"]).toBe("1");
  });

  it("parses one byte range only", () => {
    expect(parseRange("bytes=5-9")).toEqual({ start: 5, end: 9 });
    expect(parseRange("bytes=5-")).toEqual({ start: 5 });
    expect(parseRange("bytes=-5")).toBeNull();
    expect(parseRange("bytes=9-5")).toBeNull();
  });
});

describe("peers", () => {
  it("a miss is answered by a peer's cache, verified, and kept", async () => {
    const data = randomBytes(4096);
    const digest = digestOf(data);
    const peerCache = new LayerCache(newDir(), 1 << 20);
    await peerCache.storeRange(digest, 0, data);
    const peers = new Peers([await serving(peerCache)]);
    cleanups.push(() => peers.close());
    const registryAsked: number[] = [];
    const registry = async (o: number, l: number): Promise<Buffer> => (registryAsked.push(o), data.subarray(o, o + l));
    const local = new LayerCache(newDir(), 1 << 20);
    const fetcher = new UnitFetcher(unitsOf(data, digest), new CachedBlob(local, digest, data.length, peerFirst(peers, "demo", digest, registry)), demandOnly);
    const got = await Promise.all(fetcher.get([0, 1, 2, 3]));
    expect(Buffer.concat(got).equals(data)).toBe(true);
    expect(registryAsked).toEqual([]);
    expect(peers.stats).toMatchObject({ hits: 1, bytes: 4096, distrusted: 0 });
    // a range the peer lacks goes to the registry
    expect(await peers.fetchRange("demo", digestOf(Buffer.from("x")), 0, 10)).toBeUndefined();
    expect(peers.stats.misses).toBe(1);
  });

  it("a peer that sends bad bytes is set aside and the registry answers the read", async () => {
    const data = randomBytes(2048);
    const digest = digestOf(data);
    const liar: Server = createServer((req, res) => {
      const m = /bytes=(\d+)-(\d+)/.exec(req.headers.range ?? "");
      const start = Number(m?.[1] ?? 0);
      const end = Number(m?.[2] ?? data.length - 1);
      const body = Buffer.from(data.subarray(start, end + 1));
      body[0] = (body[0] as number) ^ 0xff;
      res.writeHead(206, { "content-range": `bytes ${start}-${end}/${data.length}`, "content-length": body.length });
      res.end(body);
    });
    await new Promise<void>((r) => liar.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => liar.close(() => r())));
    const peers = new Peers([`127.0.0.1:${(liar.address() as AddressInfo).port}`]);
    cleanups.push(() => peers.close());
    const registryAsked: number[] = [];
    const registry = async (o: number, l: number): Promise<Buffer> => (registryAsked.push(o), data.subarray(o, o + l));
    const fetcher = new UnitFetcher(unitsOf(data, digest), new CachedBlob(new LayerCache(newDir(), 1 << 20), digest, data.length, peerFirst(peers, "demo", digest, registry)), demandOnly);
    const got = await Promise.all(fetcher.get([0, 1]));
    expect(Buffer.concat(got).equals(data)).toBe(true);
    expect(registryAsked).toEqual([0]);
    expect(peers.stats.distrusted).toBe(1);
    expect(await peers.fetchRange("demo", digest, 0, 10)).toBeUndefined(); // set aside: not asked
  });

  it("a whole blob from a peer fails at its end unless it matches its digest", async () => {
    const data = randomBytes(3000);
    const cache = new LayerCache(newDir(), 1 << 20);
    const w = cache.blobWriter(digestOf(data));
    await w.write(data);
    await w.commit();
    const peers = new Peers([await serving(cache)]);
    cleanups.push(() => peers.close());
    const good = await peers.blobStream("demo", digestOf(data), data.length);
    const chunks: Buffer[] = [];
    for await (const c of good?.body ?? []) chunks.push(c as Buffer);
    expect(Buffer.concat(chunks).equals(data)).toBe(true);
    // the file spoiled on the peer's disk: the stream errors, nothing is taken as good
    writeFileSync(join(cache.dir, "blobs/sha256", sha(data)), Buffer.alloc(3000));
    const spoiled = await peers.blobStream("demo", digestOf(data), data.length);
    await expect((async () => {
      for await (const c of spoiled?.body ?? []) void c;
    })()).rejects.toThrow(/digest mismatch/);
  });
});

describe("an artifact's blobs through peers", () => {
  it("a blob kept in one cache (checked against its digest) comes whole from that peer; a spoiled copy sets the peer aside and gives nothing", async () => {
    const index = randomBytes(5000);
    const cache = new LayerCache(newDir(), 1 << 20);
    await cache.keepBlob(digestOf(index), index);
    await cache.keepBlob(`sha256:${"0".repeat(64)}`, Buffer.from("not what that digest names"));
    expect(await cache.blobPath(`sha256:${"0".repeat(64)}`)).toBeUndefined();
    const peers = new Peers([await serving(cache)]);
    cleanups.push(() => peers.close());
    expect((await peers.blob("demo", digestOf(index), index.length))?.equals(index)).toBe(true);
    expect(await peers.blob("demo", digestOf(randomBytes(10)), 10)).toBeUndefined(); // not there
    expect(peers.stats.distrusted).toBe(0);
    writeFileSync(join(cache.dir, "blobs/sha256", sha(index)), Buffer.alloc(5000));
    expect(await peers.blob("demo", digestOf(index), index.length)).toBeUndefined();
    expect(peers.stats.distrusted).toBe(1);
  });
});

describe("an artifact's blob from a peer that trickles", () => {
  it("is given up after the peer timeout plus a second per MiB, and the peer is set aside", async () => {
    const blob = randomBytes(100);
    const trickler: Server = createServer((_req, res) => {
      res.writeHead(200, { "content-length": String(blob.length) });
      let at = 0;
      const drip = setInterval(() => {
        if (at >= blob.length || res.destroyed) return clearInterval(drip);
        res.write(blob.subarray(at, ++at));
      }, 100);
      res.on("close", () => clearInterval(drip));
    });
    await new Promise<void>((r) => trickler.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => {
      trickler.closeAllConnections();
      trickler.close(() => r());
    }));
    // 300 ms between bytes at most (the trickle keeps to it), 300 ms + 1 s for the whole blob
    const peers = new Peers([`http://127.0.0.1:${(trickler.address() as AddressInfo).port}`], { timeoutMs: 300 });
    cleanups.push(() => peers.close());
    const started = Date.now();
    expect(await peers.blob("demo", digestOf(blob), blob.length)).toBeUndefined();
    expect(Date.now() - started).toBeLessThan(3000); // all 100 bytes would take 10 s
    expect(peers.stats.distrusted).toBe(1);
  });
});

describe("peers, busy or barred", () => {
  it("a busy peer (503) is skipped for the request, not set aside", async () => {
    const peers = new Peers([await serving(new LayerCache(newDir(), 1 << 20), 0)]);
    cleanups.push(() => peers.close());
    expect(await peers.fetchRange("demo", digestOf(Buffer.from("b")), 0, 10)).toBeUndefined();
    expect(peers.stats).toMatchObject({ misses: 1, distrusted: 0 });
  });

  it("a layer whose index came from a peer takes its bytes from the registry only", async () => {
    const data = randomBytes(2048);
    const digest = digestOf(data);
    const peerCache = new LayerCache(newDir(), 1 << 20);
    await peerCache.storeRange(digest, 0, data);
    const peers = new Peers([await serving(peerCache)]);
    cleanups.push(() => peers.close());
    const asked: number[] = [];
    const local = new LayerCache(newDir(), 1 << 20);
    // a chunk a peer could have put there (augur cache sync keeps chunks as sent)
    await local.storeRange(digest, 1024, Buffer.alloc(1024, 7));
    const blob = new CachedBlob(local, digest, data.length, peerFirst(peers, "demo", digest, async (o, l) => (asked.push(o), data.subarray(o, o + l))));
    expect((await blob.read(0, 1024)).equals(data.subarray(0, 1024))).toBe(true);
    expect(asked).toEqual([]); // the peer answered
    blob.registryOnly();
    // neither the peer nor cached chunks: the registry
    expect((await blob.read(1024, 1024)).equals(data.subarray(1024))).toBe(true);
    expect(asked).toEqual([1024]);
    expect(peers.stats.hits).toBe(1);
  });
});

describe("a cache file that fails its check on read", () => {
  it("is dropped and its bytes fetched again", async () => {
    const data = randomBytes(2048);
    const digest = digestOf(data);
    const cache = new LayerCache(newDir(), 1 << 20);
    await cache.storeRange(digest, 0, data);
    const chunkDir = join(cache.dir, "chunks/sha256", sha(data));
    const [name] = readdirSync(chunkDir);
    writeFileSync(join(chunkDir, name as string), Buffer.alloc(2048)); // spoiled on disk, same size
    const asked: number[] = [];
    const blob = new CachedBlob(cache, digest, data.length, async (o, l) => (asked.push(o), data.subarray(o, o + l)));
    const fetcher = new UnitFetcher(unitsOf(data, digest), blob, demandOnly);
    expect(Buffer.concat(await Promise.all(fetcher.get([0, 1]))).equals(data)).toBe(true);
    expect(asked).toEqual([0]);
    await new Promise((r) => setTimeout(r, 50));
    // the good bytes replaced the spoiled file
    expect((await cache.readRange(digest, 0, 2048))?.equals(data)).toBe(true);
  });
});
