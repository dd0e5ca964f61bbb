// The registry client against a real docker-registry (distribution) with an
// image built and pushed by skopeo, plus small node:http servers for what a
// stock registry cannot show: token and basic auth, redirects to storage,
// 5xx, hangs and resets, a server that ignores Range.
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
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
