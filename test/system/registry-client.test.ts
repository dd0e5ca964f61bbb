// The registry client against a real docker-registry (distribution) with an
// image built and pushed by skopeo, plus small node:http servers for what a
// stock registry cannot show: token and basic auth, redirects to storage,
// 5xx, hangs and resets, a server that ignores Range, and the ways servers
// answer (or fail to answer) a multi-range request.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";
import { isFailedPrecondition, isInvalidArgument, isNotFound, isUnavailable } from "../../snapshotter/errdefs/errors.js";
import { anonymous } from "../../snapshotter/registry/credentials.js";
import { MediaTypes } from "../../snapshotter/registry/manifest.js";
import { RegistryClient, type RegistryClientOptions } from "../../snapshotter/registry/registry-client.js";
import { scratchDir } from "../harness/processes.js";
import { startRegistry, type Registry } from "../harness/registry.js";

const sha256 = (b: Buffer): string => "sha256:" + createHash("sha256").update(b).digest("hex");
const MISSING = "sha256:" + "0".repeat(64);

async function rejection(p: Promise<unknown>): Promise<Error> {
  try {
    await p;
  } catch (err) {
    return err as Error;
  }
  throw new Error("expected the promise to reject");
}

async function collect(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Every client and fake server a test creates, closed after it whatever happens. */
const clients: RegistryClient[] = [];
const servers: Server[] = [];
function client(options: RegistryClientOptions = {}): RegistryClient {
  const c = new RegistryClient({ credentials: anonymous, hostsDir: "/nonexistent", retries: 2, backoffMs: 10, ...options });
  clients.push(c);
  return c;
}
async function fakeServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ host: string; url: string }> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { host, url: `http://${host}` };
}
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
});

describe("RegistryClient against docker-registry", () => {
  let dir: string;
  let registry: Registry | undefined;
  let image: BuiltImage;
  let arm: BuiltImage;
  const blobFile = (img: BuiltImage, digest: string): Buffer => readFileSync(join(img.dir, "blobs", "sha256", digest.slice(7)));

  beforeAll(async () => {
    dir = scratchDir("augur-regc-");
    registry = await startRegistry(dir);
    image = await buildImage(join(dir, "amd64"), { layers: [busyboxLayer(), [{ type: "file", path: "etc/motd", content: "hello\n" }]] });
    arm = await buildImage(join(dir, "arm64"), { layers: [[{ type: "file", path: "arch", content: "arm64\n" }]] });
    pushImage(image, `${registry.host}/demo:latest`);
    pushImage(arm, `${registry.host}/demo:arm`);
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it("resolves a tag to the pushed manifest, config and layers", async () => {
    const resolved = await client().resolve(`${registry!.host}/demo:latest`);
    const manifest = JSON.parse(blobFile(image, image.manifestDigest).toString()) as { config: { digest: string } };
    expect(resolved.digest).toBe(image.manifestDigest);
    expect(resolved.rootDigest).toBe(image.manifestDigest);
    expect(sha256(resolved.manifestBytes)).toBe(image.manifestDigest);
    expect(resolved.config.digest).toBe(manifest.config.digest);
    expect(resolved.layers.map((l) => l.digest)).toEqual(image.layerDigests);
    expect(resolved.layers.map((l) => l.size)).toEqual(image.layerSizes);
    expect(resolved.layers[0]?.mediaType).toBe("application/vnd.oci.image.layer.v1.tar+gzip");
  });

  it("resolves a digest reference", async () => {
    const resolved = await client().resolve(`${registry!.host}/demo@${arm.manifestDigest}`);
    expect(resolved.digest).toBe(arm.manifestDigest);
    expect(resolved.layers.map((l) => l.digest)).toEqual(arm.layerDigests);
  });

  it("follows an image index to the requested platform", async () => {
    const desc = (img: BuiltImage, architecture: string) => ({
      mediaType: MediaTypes.ociManifest,
      digest: img.manifestDigest,
      size: blobFile(img, img.manifestDigest).length,
      platform: { os: "linux", architecture },
    });
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaTypes.ociIndex, manifests: [desc(arm, "arm64"), desc(image, "amd64")] }));
    const put = await fetch(`http://${registry!.host}/v2/demo/manifests/multi`, { method: "PUT", headers: { "content-type": MediaTypes.ociIndex }, body: index });
    expect(put.status).toBe(201);
    const c = client();
    const amd64 = await c.resolve(`${registry!.host}/demo:multi`);
    expect(amd64.digest).toBe(image.manifestDigest);
    expect(amd64.rootDigest).toBe(sha256(index));
    const arm64 = await c.resolve(`${registry!.host}/demo:multi`, "linux/arm64");
    expect(arm64.digest).toBe(arm.manifestDigest);
    expect(arm64.layers.map((l) => l.digest)).toEqual(arm.layerDigests);
    const err = await rejection(c.resolve(`${registry!.host}/demo:multi`, "linux/riscv64"));
    expect(isNotFound(err)).toBe(true);
    expect(err.message).toContain("linux/riscv64");
  });

  it("fetches whole blobs identical to the built layout", async () => {
    const c = client();
    for (const digest of image.layerDigests) {
      expect((await c.fetchBlob(`${registry!.host}/demo`, digest)).equals(blobFile(image, digest))).toBe(true);
    }
    expect(await c.blobSize(`${registry!.host}/demo`, image.layerDigests[0]!)).toBe(image.layerSizes[0]);
  });

  it("fetches byte ranges identical to the same slices of the blob", async () => {
    const c = client();
    const digest = image.layerDigests[0]!;
    const bytes = blobFile(image, digest);
    const ranges = [
      { offset: 0, length: 1 },
      { offset: 0, length: 512 },
      { offset: 12_345, length: 100_000 },
      { offset: bytes.length - 10, length: 10 },
      { offset: Math.floor(bytes.length / 2), length: 1 },
    ];
    const slices = await Promise.all(ranges.map((r) => c.fetchBlob(`${registry!.host}/demo`, digest, r)));
    ranges.forEach((r, i) => expect(slices[i]!.equals(bytes.subarray(r.offset, r.offset + r.length))).toBe(true));
    const tail = await c.fetchBlob(`${registry!.host}/demo`, digest, { offset: bytes.length - 4, length: 100 });
    expect(tail.equals(bytes.subarray(bytes.length - 4))).toBe(true);
    const beyond = await rejection(c.fetchBlob(`${registry!.host}/demo`, digest, { offset: bytes.length + 10, length: 5 }));
    expect(isInvalidArgument(beyond)).toBe(true);
  });

  it("streams a layer from the start and from an offset", async () => {
    const c = client();
    const digest = image.layerDigests[0]!;
    const bytes = blobFile(image, digest);
    expect((await collect(await c.blobStream(`${registry!.host}/demo`, digest))).equals(bytes)).toBe(true);
    const offset = 1_000_001;
    expect((await collect(await c.blobStream(`${registry!.host}/demo`, digest, offset))).equals(bytes.subarray(offset))).toBe(true);
  });

  it("answers NotFound naming host and digest for a missing blob, tag or repository", async () => {
    const c = client();
    const blob = await rejection(c.fetchBlob(`${registry!.host}/demo`, MISSING));
    expect(isNotFound(blob)).toBe(true);
    expect(blob.message).toContain(registry!.host);
    expect(blob.message).toContain(MISSING);
    expect(isNotFound(await rejection(c.blobSize(`${registry!.host}/demo`, MISSING)))).toBe(true);
    expect(isNotFound(await rejection(c.blobStream(`${registry!.host}/demo`, MISSING)))).toBe(true);
    const tag = await rejection(c.resolve(`${registry!.host}/demo:nope`));
    expect(isNotFound(tag)).toBe(true);
    expect(tag.message).toContain("demo:nope");
    expect(isNotFound(await rejection(c.resolve(`${registry!.host}/no/such:latest`)))).toBe(true);
  });

  it("refuses blobs and manifests whose bytes do not match their digest", async () => {
    const bad = await buildImage(join(dir, "corrupt"), { layers: [[{ type: "file", path: "f", content: randomBytes(4096) }]] });
    pushImage(bad, `${registry!.host}/corrupt:latest`);
    const stored = (digest: string): string => join(dir, "registry-data", "docker", "registry", "v2", "blobs", "sha256", digest.slice(7, 9), digest.slice(7), "data");
    const layer = bad.layerDigests[0]!;
    const data = readFileSync(stored(layer));
    const middle = data.length >> 1;
    data[middle] = (data[middle] ?? 0) ^ 0xff;
    writeFileSync(stored(layer), data);
    const c = client();
    const whole = await rejection(c.fetchBlob(`${registry!.host}/corrupt`, layer));
    expect(isFailedPrecondition(whole)).toBe(true);
    expect(whole.message).toMatch(/digest mismatch/);
    expect(whole.message).toContain(layer);
    expect(whole.message).toContain(registry!.host);
    const streamed = await rejection(collect(await c.blobStream(`${registry!.host}/corrupt`, layer)));
    expect(streamed.message).toMatch(/digest mismatch/);

    const manifest = readFileSync(stored(bad.manifestDigest));
    writeFileSync(stored(bad.manifestDigest), Buffer.from(manifest.toString().replace('"schemaVersion":2', '"schemaVersion": 2')));
    const resolved = await rejection(c.resolve(`${registry!.host}/corrupt:latest`));
    expect(isFailedPrecondition(resolved)).toBe(true);
    expect(resolved.message).toMatch(/digest mismatch/);
  });

  it("falls back from a mirror that lacks the image to the server in hosts.toml", async () => {
    let mirrorHits = 0;
    const mirror = await fakeServer((_req, res) => {
      mirrorHits++;
      res.writeHead(404).end();
    });
    const hostsDir = join(dir, "certs.d");
    const hostDir = join(hostsDir, registry!.host.replace(/:(\d+)$/, "_$1_"));
    mkdirSync(hostDir, { recursive: true });
    writeFileSync(join(hostDir, "hosts.toml"), `server = "http://${registry!.host}"\n[host."${mirror.url}"]\n  capabilities = ["pull", "resolve"]\n`);
    const c = client({ hostsDir });
    const resolved = await c.resolve(`${registry!.host}/demo:latest`);
    expect(resolved.digest).toBe(image.manifestDigest);
    const config = await c.fetchBlob(`${registry!.host}/demo`, resolved.config.digest);
    expect(sha256(config)).toBe(resolved.config.digest);
    expect(mirrorHits).toBe(2);
  });
});

describe("RegistryClient against fake registries", () => {
  const blob = randomBytes(200_000);
  const digest = sha256(blob);
  const blobPath = `/v2/demo/blobs/${digest}`;

  it("gets a bearer token with the configured credentials, caches it, and drops it on the redirect to storage", async () => {
    const tokenRequests: URL[] = [];
    const storage = await fakeServer((req, res) => {
      if (req.headers.authorization) res.writeHead(400).end("storage refuses registry credentials");
      else res.writeHead(200, { "content-length": blob.length }).end(blob);
    });
    let registryUrl = "";
    const fake = await fakeServer((req, res) => {
      const url = new URL(req.url ?? "/", registryUrl);
      if (url.pathname === "/token") {
        tokenRequests.push(url);
        const ok = req.headers.authorization === `Basic ${Buffer.from("alice:s3cret").toString("base64")}`;
        res.writeHead(ok ? 200 : 401, { "content-type": "application/json" }).end(ok ? JSON.stringify({ token: "tok-1", expires_in: 300 }) : "{}");
      } else if (req.headers.authorization !== "Bearer tok-1") {
        res.writeHead(401, { "www-authenticate": `Bearer realm="${registryUrl}/token",service="fake-registry",scope="repository:demo:pull"` }).end();
      } else if (url.pathname === blobPath) {
        res.writeHead(307, { location: `${storage.url}/data/${digest.slice(7)}?sig=abc` }).end();
      } else res.writeHead(404).end();
    });
    registryUrl = fake.url;
    const cfgDir = scratchDir("augur-dockercfg-");
    try {
      writeFileSync(join(cfgDir, "config.json"), JSON.stringify({ auths: { [fake.host]: { auth: Buffer.from("alice:s3cret").toString("base64") } } }));
      const c = new RegistryClient({ dockerConfig: join(cfgDir, "config.json"), hostsDir: "/nonexistent", retries: 0 });
      clients.push(c);
      expect((await c.fetchBlob(`${fake.host}/demo`, digest)).equals(blob)).toBe(true);
      expect((await c.fetchBlob(`${fake.host}/demo`, digest, { offset: 10, length: 5 })).equals(blob.subarray(10, 15))).toBe(true);
      expect(tokenRequests).toHaveLength(1);
      expect(tokenRequests[0]?.searchParams.get("service")).toBe("fake-registry");
      expect(tokenRequests[0]?.searchParams.get("scope")).toBe("repository:demo:pull");
    } finally {
      rmSync(cfgDir, { recursive: true, force: true });
    }
    const wrong = new RegistryClient({ credentials: () => ({ username: "alice", password: "wrong" }), hostsDir: "/nonexistent", retries: 0 });
    clients.push(wrong);
    const err = await rejection(wrong.fetchBlob(`${fake.host}/demo`, digest));
    expect(isFailedPrecondition(err)).toBe(true);
    expect(err.message).toMatch(/credentials rejected/);
  });

  it("trades an identitytoken for an access token with an OAuth2 refresh_token POST", async () => {
    const forms: URLSearchParams[] = [];
    let registryUrl = "";
    const fake = await fakeServer((req, res) => {
      if (req.url === "/oauth") {
        let body = "";
        req.on("data", (c: Buffer) => (body += c.toString()));
        req.on("end", () => {
          const form = new URLSearchParams(body);
          forms.push(form);
          const ok = req.method === "POST" && form.get("grant_type") === "refresh_token" && form.get("refresh_token") === "rt-42";
          res.writeHead(ok ? 200 : 401).end(ok ? JSON.stringify({ access_token: "acc-9", expires_in: 60 }) : "{}");
        });
      } else if (req.headers.authorization !== "Bearer acc-9") {
        res.writeHead(401, { "www-authenticate": `Bearer realm="${registryUrl}/oauth",service="svc"` }).end();
      } else res.writeHead(200, { "content-length": blob.length }).end(blob);
    });
    registryUrl = fake.url;
    const c = client({ credentials: () => ({ identityToken: "rt-42" }) });
    expect((await c.fetchBlob(`${fake.host}/demo`, digest)).equals(blob)).toBe(true);
    expect(forms.map((f) => [f.get("service"), f.get("scope")])).toEqual([["svc", "repository:demo:pull"]]);
  });

  it("answers a basic challenge with credentials, and fails clearly without them", async () => {
    const expected = `Basic ${Buffer.from("bob:pw").toString("base64")}`;
    const fake = await fakeServer((req, res) => {
      if (req.headers.authorization !== expected) res.writeHead(401, { "www-authenticate": 'Basic realm="fake"' }).end();
      else res.writeHead(200, { "content-length": blob.length }).end(req.method === "HEAD" ? undefined : blob);
    });
    const c = client({ credentials: (host) => (host === fake.host ? { username: "bob", password: "pw" } : undefined) });
    expect(await c.blobSize(`${fake.host}/demo`, digest)).toBe(blob.length);
    expect((await c.fetchBlob(`${fake.host}/demo`, digest)).equals(blob)).toBe(true);
    const err = await rejection(client().fetchBlob(`${fake.host}/demo`, digest));
    expect(isFailedPrecondition(err)).toBe(true);
    expect(err.message).toContain("401");
    expect(err.message).toContain(fake.host);
  });

  it("retries 5xx with backoff until success, and gives up with Unavailable after the bounded count", async () => {
    let hits = 0;
    let failFirst = 2;
    const fake = await fakeServer((_req, res) => {
      hits++;
      if (hits <= failFirst) res.writeHead(503).end("busy");
      else res.writeHead(200, { "content-length": blob.length }).end(blob);
    });
    expect((await client({ retries: 3 }).fetchBlob(`${fake.host}/demo`, digest)).equals(blob)).toBe(true);
    expect(hits).toBe(3);
    hits = 0;
    failFirst = 100;
    const started = Date.now();
    const err = await rejection(client({ retries: 3, backoffMs: 40 }).fetchBlob(`${fake.host}/demo`, digest));
    expect(isUnavailable(err)).toBe(true);
    expect(err.message).toContain(fake.host);
    expect(err.message).toContain(digest);
    expect(err.message).toContain("4 attempts");
    expect(hits).toBe(4);
    // backoff 40, 80, 160 ms with jitter down to half: at least 140 ms in total
    expect(Date.now() - started).toBeGreaterThanOrEqual(140);
  });

  it("times out a hung request and a reset connection, then succeeds on retry", async () => {
    let hits = 0;
    const fake = await fakeServer((req, res) => {
      hits++;
      if (hits === 1) return; // never answers
      if (hits === 2) {
        req.socket.destroy();
        return;
      }
      res.writeHead(200, { "content-length": blob.length }).end(blob);
    });
    const started = Date.now();
    expect((await client({ timeoutMs: 300, retries: 3 }).fetchBlob(`${fake.host}/demo`, digest)).equals(blob)).toBe(true);
    expect(hits).toBe(3);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
  });

  it("reports an unreachable host as Unavailable", async () => {
    const fake = await fakeServer(() => undefined);
    const host = fake.host;
    await new Promise<void>((resolve) => servers.pop()!.close(() => resolve()));
    const err = await rejection(client({ retries: 1 }).fetchBlob(`${host}/demo`, digest));
    expect(isUnavailable(err)).toBe(true);
    expect(err.message).toContain(host);
    expect(err.message).toContain(digest);
  });

  it("slices the right bytes when the server ignores Range", async () => {
    const fake = await fakeServer((_req, res) => res.writeHead(200, { "content-length": blob.length }).end(blob));
    const c = client();
    expect((await c.fetchBlob(`${fake.host}/demo`, digest, { offset: 70_000, length: 1234 })).equals(blob.subarray(70_000, 71_234))).toBe(true);
    expect((await collect(await c.blobStream(`${fake.host}/demo`, digest, 150_000))).equals(blob.subarray(150_000))).toBe(true);
  });

  it("resumes a stream whose connection drops midway with a Range request, and still verifies the digest", async () => {
    const ranges: (string | undefined)[] = [];
    const fake = await fakeServer((req, res) => {
      ranges.push(req.headers.range);
      const from = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? "")?.[1] ?? 0);
      const rest = blob.subarray(from);
      res.writeHead(from > 0 ? 206 : 200, { "content-length": rest.length, ...(from > 0 ? { "content-range": `bytes ${from}-${blob.length - 1}/${blob.length}` } : {}) });
      if (ranges.length > 2) {
        res.end(rest);
        return;
      }
      res.write(rest.subarray(0, 50_000), () => setTimeout(() => req.socket.destroy(), 20));
    });
    const whole = await collect(await client({ retries: 3 }).blobStream(`${fake.host}/demo`, digest));
    expect(whole.equals(blob)).toBe(true);
    expect(ranges).toEqual([undefined, "bytes=50000-", "bytes=100000-"]);
    const fromOffset = await collect(await client({ retries: 3 }).blobStream(`${fake.host}/demo`, digest, 1000));
    expect(fromOffset.equals(blob.subarray(1000))).toBe(true);

    ranges.length = 0;
    const err = await rejection(collect(await client({ retries: 1 }).blobStream(`${fake.host}/demo`, digest)));
    expect(err.message).toMatch(/other side closed|socket/i);
  });

  it("keeps at most `concurrency` requests in flight", async () => {
    let inFlight = 0;
    let peak = 0;
    const fake = await fakeServer((_req, res) => {
      inFlight++;
      peak = Math.max(peak, inFlight);
      setTimeout(() => {
        inFlight--;
        res.writeHead(200, { "content-length": 100 }).end(blob.subarray(0, 100));
      }, 30);
    });
    const c = client({ concurrency: 3 });
    const slices = await Promise.all(Array.from({ length: 12 }, () => c.fetchBlob(`${fake.host}/demo`, digest, { offset: 0, length: 100 })));
    expect(slices.every((s) => s.equals(blob.subarray(0, 100)))).toBe(true);
    expect(peak).toBe(3);
  });
});

/** The ranges of a Range header, as [start, end). */
function rangesOf(header: string | undefined): [number, number][] {
  const spec = /^bytes=(.+)$/.exec(header ?? "")?.[1];
  return spec ? spec.split(",").map((r) => r.split("-").map(Number)).map(([a, b]) => [a ?? 0, (b ?? 0) + 1]) : [];
}

const BOUNDARY = "augur-test-0123456789";
const MULTIPART = `multipart/byteranges; boundary=${BOUNDARY}`;
/** The head of one part (with the delimiter before it), as Go's ServeContent writes it. */
const partHead = (first: boolean, [start, end]: [number, number], size: number): string =>
  `${first ? "" : "\r\n"}--${BOUNDARY}\r\nContent-Type: application/octet-stream\r\nContent-Range: bytes ${start}-${end - 1}/${size}\r\n\r\n`;
const CLOSE = `\r\n--${BOUNDARY}--\r\n`;
function multipartBody(blob: Buffer, parts: [number, number][]): Buffer {
  return Buffer.concat([...parts.flatMap((p, i) => [Buffer.from(partHead(i === 0, p, blob.length)), blob.subarray(p[0], p[1])]), Buffer.from(CLOSE)]);
}

/**
 * Answers as a server that does multi-range: no Range, the whole blob; one
 * range, a single-part 206; several, a multipart 206 of `plan(ranges)`.
 */
function serveRanges(blob: Buffer, req: IncomingMessage, res: ServerResponse, plan = (r: [number, number][]): [number, number][] => r): void {
  const ranges = rangesOf(req.headers.range);
  if (ranges.length === 0) {
    res.writeHead(200, { "content-length": blob.length }).end(blob);
  } else if (ranges.length === 1) {
    const [[start, end]] = ranges as [[number, number]];
    const last = Math.min(end, blob.length);
    if (start >= blob.length) res.writeHead(416, { "content-range": `bytes */${blob.length}` }).end();
    else res.writeHead(206, { "content-range": `bytes ${start}-${last - 1}/${blob.length}`, "content-length": last - start }).end(blob.subarray(start, last));
  } else {
    const body = multipartBody(blob, plan(ranges));
    res.writeHead(206, { "content-type": MULTIPART, "content-length": body.length }).end(body);
  }
}

const isMulti = (header: string | undefined): boolean => (header ?? "").includes(",");
const slices = (blob: Buffer, ranges: { offset: number; length: number }[]): Buffer[] => ranges.map((r) => blob.subarray(r.offset, r.offset + r.length));
const headerOf = (r: { offset: number; length: number }): string => `bytes=${r.offset}-${r.offset + r.length - 1}`;
function shuffle<T>(items: T[]): T[] {
  const a = [...items];
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j] as T, a[i] as T];
  }
  return a;
}
/** `count` disjoint cells of `cell` bytes (the last few shortened) at random places in `size` bytes, in random order. */
function randomCells(size: number, cell: number, count: number): { offset: number; length: number }[] {
  return shuffle(Array.from({ length: Math.floor(size / cell) }, (_, i) => i))
    .slice(0, count)
    .map((i, n) => ({ offset: i * cell, length: n % 5 === 4 ? cell - 1000 : cell }));
}
async function settle(promises: Promise<Buffer>[]): Promise<(Buffer | Error)[]> {
  return Promise.all(promises.map((p) => p.catch((err: unknown) => err as Error)));
}

describe("RegistryClient.fetchBlobRanges against docker-registry", () => {
  let dir: string;
  let registry: Registry | undefined;
  const blob = randomBytes(2 << 20);
  const digest = sha256(blob);
  let repo = "";
  /** GETs of the blob the registry logged after `from` (a log length), with their statuses. */
  const blobGets = async (from: number): Promise<string[]> =>
    [...(await registry!.settledLog()).slice(from).matchAll(new RegExp(`"GET /v2/ranges/blobs/${digest} HTTP/[\\d.]+" (\\d{3})`, "g"))].map((m) => m[1] as string);

  beforeAll(async () => {
    dir = scratchDir("augur-regc-ranges-");
    registry = await startRegistry(dir);
    repo = `${registry.host}/ranges`;
    await client().pushBlob(repo, blob);
  });
  afterAll(async () => {
    await registry?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Fetches `ranges` of the blob, checks every one byte-exact, and returns the statuses of the blob GETs the registry logged meanwhile. */
  async function fetchExact(c: RegistryClient, ranges: { offset: number; length: number }[]): Promise<string[]> {
    const from = (await registry!.settledLog()).length;
    const got = await Promise.all(c.fetchBlobRanges(repo, digest, ranges));
    got.forEach((b, i) => expect(b.equals(slices(blob, ranges)[i]!), `range ${i}`).toBe(true));
    return blobGets(from);
  }

  it("fetches shuffled ranges byte-exact in one request", async () => {
    const c = client();
    const ranges = randomCells(blob.length, 64 << 10, 24);
    expect(await fetchExact(c, ranges)).toEqual(["206"]);
    expect(c.rangeCounts).toEqual({ multiRequests: 1, multiRanges: 24, singleFallbacks: 0 });
  });

  it("splits more than 64 ranges over requests sent together", async () => {
    const c = client();
    const ranges = randomCells(blob.length, 16 << 10, 100);
    expect(await fetchExact(c, ranges)).toEqual(["206", "206"]);
    expect(c.rangeCounts).toEqual({ multiRequests: 2, multiRanges: 100, singleFallbacks: 0 });
  });

  it("returns the bytes up to the blob's end for a range past it, and InvalidArgument for a range wholly beyond it", async () => {
    const c = client();
    const ranges = [{ offset: blob.length - 10, length: 100 }, { offset: 5, length: 10 }, { offset: blob.length + 100, length: 5 }];
    const [tail, head, beyond] = await settle(c.fetchBlobRanges(repo, digest, ranges));
    expect((tail as Buffer).equals(blob.subarray(blob.length - 10))).toBe(true);
    expect((head as Buffer).equals(blob.subarray(5, 15))).toBe(true);
    expect(isInvalidArgument(beyond)).toBe(true);
    expect(c.rangeCounts).toEqual({ multiRequests: 1, multiRanges: 3, singleFallbacks: 1 });
    // the registry left out a range it could not serve: that does not make it a single-range server
    await Promise.all(c.fetchBlobRanges(repo, digest, [{ offset: 0, length: 1 }, { offset: 10, length: 1 }]));
    expect(c.rangeCounts.multiRequests).toBe(2);
  });

  it("rejects every range of a missing blob with NotFound, after one request", async () => {
    const from = (await registry!.settledLog()).length;
    const errors = await settle(client().fetchBlobRanges(repo, MISSING, [{ offset: 0, length: 10 }, { offset: 20, length: 10 }]));
    expect(errors.every((e) => isNotFound(e))).toBe(true);
    expect((await registry!.settledLog()).slice(from).match(new RegExp(`GET /v2/ranges/blobs/${MISSING}`, "g"))).toHaveLength(1);
  });

  it("rejects invalid, empty and overlapping ranges with InvalidArgument and sends nothing", async () => {
    const c = client();
    for (const ranges of [
      [{ offset: 0, length: 10 }, { offset: -1, length: 10 }],
      [{ offset: 0, length: 10 }, { offset: 20, length: 0 }],
      [{ offset: 0, length: 10 }, { offset: 100, length: 10 }, { offset: 5, length: 10 }],
    ]) {
      const errors = await settle(c.fetchBlobRanges(repo, digest, ranges));
      expect(errors).toHaveLength(ranges.length);
      expect(errors.every((e) => isInvalidArgument(e)), JSON.stringify(ranges)).toBe(true);
    }
    expect(c.fetchBlobRanges(repo, digest, [])).toEqual([]);
    expect(c.rangeCounts).toEqual({ multiRequests: 0, multiRanges: 0, singleFallbacks: 0 });
  });
});

describe("RegistryClient.fetchBlobRanges against fake servers", () => {
  const blob = randomBytes(300_000);
  const digest = sha256(blob);
  const ranges = [{ offset: 200_000, length: 1000 }, { offset: 0, length: 500 }, { offset: 500, length: 700 }, { offset: 100_000, length: 65_536 }];
  const want = slices(blob, ranges);
  const expectExact = (got: Buffer[]): void => got.forEach((b, i) => expect(b.equals(want[i]!), `range ${i}`).toBe(true));

  it("answered with the whole blob (200): drops the body at once, fetches one by one, and from then on only one by one", async () => {
    const big = randomBytes(8 << 20);
    const bigDigest = sha256(big);
    const seen: (string | undefined)[] = [];
    let wholeBody: { sent: number; finished: boolean } | undefined;
    const fake = await fakeServer((req, res) => {
      seen.push(req.headers.range);
      if (!isMulti(req.headers.range)) return serveRanges(big, req, res);
      // the whole blob, slowly: 8 MiB at 64 KiB every 20 ms would take 2.5 s
      res.writeHead(200, { "content-length": big.length });
      let sent = 0;
      const timer = setInterval(() => {
        res.write(big.subarray(sent, sent + (64 << 10)));
        sent += 64 << 10;
        if (sent >= big.length) res.end();
      }, 20);
      res.on("close", () => {
        clearInterval(timer);
        wholeBody = { sent, finished: res.writableFinished };
      });
    });
    const c = client();
    const first = await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, bigDigest, ranges));
    first.forEach((b, i) => expect(b.equals(slices(big, ranges)[i]!)).toBe(true));
    for (let i = 0; i < 100 && !wholeBody; i++) await sleep(20);
    expect(wholeBody?.finished).toBe(false);
    expect(wholeBody!.sent).toBeLessThan(big.length / 4);
    expect(seen.filter((h) => isMulti(h))).toHaveLength(1);
    expect(seen.filter((h) => !isMulti(h)).sort()).toEqual(ranges.map(headerOf).sort());

    seen.length = 0;
    const second = await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, bigDigest, ranges));
    second.forEach((b, i) => expect(b.equals(slices(big, ranges)[i]!)).toBe(true));
    expect(seen.sort()).toEqual(ranges.map(headerOf).sort());
    expect(c.rangeCounts).toEqual({ multiRequests: 1, multiRanges: 4, singleFallbacks: 8 });
  });

  it("answered with one part (206 of the first range): keeps it, fetches the rest one by one, then only one by one", async () => {
    const seen: (string | undefined)[] = [];
    const fake = await fakeServer((req, res) => {
      seen.push(req.headers.range);
      const [start, end] = rangesOf(req.headers.range)[0] ?? [0, 0];
      res.writeHead(206, { "content-range": `bytes ${start}-${end - 1}/${blob.length}`, "content-length": end - start }).end(blob.subarray(start, end));
    });
    const c = client();
    expectExact(await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges)));
    // the first range came in the multi-range answer: only the other three were asked for again
    expect(seen.filter((h) => !isMulti(h)).sort()).toEqual(ranges.slice(1).map(headerOf).sort());
    expect(seen).toHaveLength(4);
    seen.length = 0;
    expectExact(await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges)));
    expect(seen.sort()).toEqual(ranges.map(headerOf).sort());
    expect(c.rangeCounts).toEqual({ multiRequests: 1, multiRanges: 4, singleFallbacks: 7 });
  });

  it("answered with one part reaching far past what it holds of the ask: drops it unread, fetches one by one, and tells callers not to pack ranges", async () => {
    const big = randomBytes(8 << 20);
    const bigDigest = sha256(big);
    const asked = [{ offset: 6 << 20, length: 1000 }, { offset: 7 << 20, length: 1000 }];
    let sent = 0;
    const fake = await fakeServer((req, res) => {
      if (!isMulti(req.headers.range)) return serveRanges(big, req, res);
      // one part from byte 0 to the end: 8 MiB for 2 KB asked
      res.writeHead(206, { "content-range": `bytes 0-${big.length - 1}/${big.length}`, "content-length": big.length });
      const timer = setInterval(() => {
        if (sent >= big.length) return res.end();
        res.write(big.subarray(sent, sent + (64 << 10)));
        sent += 64 << 10;
      }, 20);
      res.on("close", () => clearInterval(timer));
    });
    const c = client();
    expect(c.takesSeveralRanges(`${fake.host}/demo`)).toBe(true);
    const got = await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, bigDigest, asked));
    got.forEach((b, i) => expect(b.equals(slices(big, asked)[i]!)).toBe(true));
    expect(sent).toBeLessThan(1 << 20); // never read on to the asked bytes
    expect(c.takesSeveralRanges(`${fake.host}/demo`)).toBe(false);
  });

  it("takes parts that coalesce adjacent ranges and come in another order, in one request", async () => {
    const seen: (string | undefined)[] = [];
    const fake = await fakeServer((req, res) => {
      seen.push(req.headers.range);
      // coalesce ranges that touch, then send the parts last first
      serveRanges(blob, req, res, (rs) =>
        [...rs].sort((a, b) => a[0] - b[0]).reduce<[number, number][]>((out, r) => {
          const last = out[out.length - 1];
          if (last && last[1] === r[0]) last[1] = r[1];
          else out.push([...r]);
          return out;
        }, []).reverse());
    });
    const c = client();
    expectExact(await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges)));
    expect(seen).toEqual([`bytes=200000-200999,0-499,500-1199,100000-165535`]);
    expect(c.rangeCounts).toEqual({ multiRequests: 1, multiRanges: 4, singleFallbacks: 0 });
  });

  it("answered with a malformed multipart body: keeps the parts before the fault, logs it once, and goes one by one", async () => {
    const seen: (string | undefined)[] = [];
    const fake = await fakeServer((req, res) => {
      seen.push(req.headers.range);
      if (!isMulti(req.headers.range)) return serveRanges(blob, req, res);
      const good = multipartBody(blob, [[200_000, 201_000]]).subarray(0, -CLOSE.length);
      // part 2 is 10 bytes shorter than its Content-Range says
      const bad = Buffer.concat([good, Buffer.from(partHead(false, [0, 500], blob.length)), blob.subarray(0, 490), Buffer.from(CLOSE)]);
      res.writeHead(206, { "content-type": MULTIPART, "content-length": bad.length }).end(bad);
    });
    const stderr = vi.spyOn(process.stderr, "write");
    try {
      const c = client();
      expectExact(await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges)));
      const logged = stderr.mock.calls.map(([line]) => String(line)).filter((line) => line.includes("malformed multi-range response"));
      expect(logged).toHaveLength(1);
      expect(logged[0]).toContain(fake.host);
      expect(logged[0]).toMatch(/part 2 .* not followed by CRLF and the boundary/);
      expect(seen.filter((h) => !isMulti(h)).sort()).toEqual(ranges.slice(1).map(headerOf).sort());
      seen.length = 0;
      expectExact(await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges)));
      expect(seen.filter((h) => isMulti(h))).toEqual([]);
    } finally {
      stderr.mockRestore();
    }
  });

  it("resolves the first range before the connection is cut after it, refetches the rest, and keeps asking for multi-range", async () => {
    const seen: (string | undefined)[] = [];
    const call: { first?: Promise<Buffer> } = {};
    let cutAfterFirstResolved: boolean | undefined;
    const fake = await fakeServer((req, res) => {
      seen.push(req.headers.range);
      if (!isMulti(req.headers.range) || cutAfterFirstResolved !== undefined) return serveRanges(blob, req, res);
      res.writeHead(206, { "content-type": MULTIPART });
      const body = multipartBody(blob, rangesOf(req.headers.range));
      // part 1, the boundary after it and the start of part 2; then nothing until the cut
      res.write(body.subarray(0, body.indexOf(`--${BOUNDARY}`, 10) + 200));
      const cut = (resolved: boolean): void => {
        if (cutAfterFirstResolved !== undefined) return;
        cutAfterFirstResolved = resolved;
        req.socket.destroy();
      };
      const timer = setTimeout(() => cut(false), 5000);
      void call.first?.then(() => {
        clearTimeout(timer);
        cut(true);
      });
    });
    const c = client();
    const promises = c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges);
    call.first = promises[0];
    expectExact(await Promise.all(promises));
    expect(cutAfterFirstResolved).toBe(true);
    expect(seen.filter((h) => !isMulti(h)).sort()).toEqual(ranges.slice(1).map(headerOf).sort());
    // a dropped connection says nothing about multi-range: the next call asks for it again
    seen.length = 0;
    expectExact(await Promise.all(c.fetchBlobRanges(`${fake.host}/demo`, digest, ranges)));
    expect(seen).toHaveLength(1);
    expect(isMulti(seen[0])).toBe(true);
  });

  it("resolves the first range while the rest of the response is still on its way", async () => {
    let ended = 0;
    const fake = await fakeServer((req, res) => {
      const body = multipartBody(blob, rangesOf(req.headers.range));
      const split = body.indexOf(`--${BOUNDARY}`, 10) + 200; // part 1, the boundary after it, part 2's headers
      res.writeHead(206, { "content-type": MULTIPART, "content-length": body.length });
      res.write(body.subarray(0, split));
      setTimeout(() => {
        ended = performance.now();
        res.end(body.subarray(split));
      }, 300);
    });
    const [p1, p2] = client().fetchBlobRanges(`${fake.host}/demo`, digest, ranges.slice(0, 2));
    const [t1, t2] = await Promise.all([p1!.then(() => performance.now()), p2!.then(() => performance.now())]);
    expect(ended).toBeGreaterThan(0);
    expect(t1).toBeLessThan(ended);
    expect(t2 - t1).toBeGreaterThanOrEqual(250);
    expect((await p1)!.equals(want[0]!)).toBe(true);
    expect((await p2)!.equals(want[1]!)).toBe(true);
  });

  it("sends a multi-range request to the blob's storage location once the registry redirected there", async () => {
    const storageSeen: (string | undefined)[] = [];
    const storage = await fakeServer((req, res) => {
      storageSeen.push(req.headers.range);
      serveRanges(blob, req, res);
    });
    let redirects = 0;
    const registry = await fakeServer((_req, res) => {
      redirects++;
      res.writeHead(307, { location: `${storage.url}/data/${digest.slice(7)}?sig=1` }).end();
    });
    const c = client();
    expectExact(await Promise.all(c.fetchBlobRanges(`${registry.host}/demo`, digest, ranges)));
    expectExact(await Promise.all(c.fetchBlobRanges(`${registry.host}/demo`, digest, ranges)));
    expect(redirects).toBe(1);
    expect(storageSeen).toHaveLength(2);
    expect(storageSeen.every((h) => isMulti(h))).toBe(true);
    // counted once the request is over, which may be after its ranges resolved
    await vi.waitFor(() => expect(c.locationCounts).toEqual({ direct: 1, redirected: 1 }));
    expect(c.rangeCounts).toEqual({ multiRequests: 2, multiRanges: 8, singleFallbacks: 0 });
  });
});
