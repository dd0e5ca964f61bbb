// A registry that answers blob GETs with a redirect to object storage, as
// Docker Hub, ECR and GCR do, with signed URLs that expire: a lazy pull's
// Range requests for a blob go straight to where the first one was sent
// (one redirect per blob, not one per request), and once the storage URL
// has expired the registry is asked again and the reads go on.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage } from "../../scripts/images/oci-image.js";
import { pushEstargzOf } from "../harness/estargz.js";

const FILES = 12;
const content = Array.from({ length: FILES }, () => randomBytes(256 << 10));
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");
const sums = (files: number[]): string => files.map((i) => `${md5(content[i] as Buffer)}  /data/f${i}.bin\n`).join("");

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let front: Server;
let frontHost: string;
let ref = "";
/** Per blob digest: redirects the front sent, and requests its storage answered. */
const seen = { redirects: new Map<string, number>(), storage: new Map<string, number>(), expired: 0 };
/** Storage URLs carry the generation they were signed in; older ones are refused (expired). */
let generation = 0;

const bump = (m: Map<string, number>, k: string): void => void m.set(k, (m.get(k) ?? 0) + 1);

function proxy(req: IncomingMessage, res: ServerResponse, path: string): void {
  const [host, port] = registry.host.split(":");
  const up = request({ host, port: Number(port), path, method: req.method, headers: { ...req.headers, host: registry.host } }, (u) => {
    res.writeHead(u.statusCode ?? 502, u.headers);
    u.pipe(res);
  });
  up.on("error", () => res.destroy());
  req.pipe(up);
}

/** The registry's API, but blob GETs are sent to /storage/, signed for the current generation. */
function redirectingFront(): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://front");
    const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (blob && req.method === "GET") {
      bump(seen.redirects, blob[2] as string);
      res.writeHead(307, { location: `http://${frontHost}/storage/${blob[1]}/${blob[2]}?gen=${generation}` });
      res.end();
      return;
    }
    const stored = /^\/storage\/(.+)\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (stored) {
      if (Number(url.searchParams.get("gen")) !== generation) {
        seen.expired++;
        res.writeHead(403, { "content-type": "application/xml" });
        res.end("<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>");
        return;
      }
      // storage takes no registry credentials: a request carrying them would be a leak
      if (req.headers.authorization) {
        res.writeHead(400);
        res.end("credentials sent to storage");
        return;
      }
      bump(seen.storage, stored[2] as string);
      proxy(req, res, `/v2/${stored[1]}/blobs/${stored[2]}`);
      return;
    }
    proxy(req, res, req.url ?? "/");
  });
}

beforeAll(async () => {
  dir = scratchDir("as-redirect-");
  registry = await startRegistry(dir);
  front = redirectingFront();
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  frontHost = `127.0.0.1:${(front.address() as AddressInfo).port}`;
  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy", "--no-prefetch"] });
  containerd = await startContainerd(dir, augur.socket);
  const image = await buildImage(join(dir, "img"), {
    layers: [busyboxLayer(), [{ type: "dir", path: "data" }, ...content.map((c, i) => ({ type: "file" as const, path: `data/f${i}.bin`, content: c }))]],
    cmd: ["/bin/sh"],
  });
  // eStargz, so every file is its own Range request
  const plain = `${registry.host}/redirect/plain:1`;
  pushImage(image, plain);
  const esgz = `${registry.host}/redirect/estargz:1`;
  await pushEstargzOf(containerd, plain, esgz);
  ref = `${frontHost}/redirect/estargz:1`;
  const pulled = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
  if (pulled.code !== 0) throw new Error(`rpull: ${pulled.stderr}`);
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  front?.closeAllConnections();
  await new Promise((r) => (front ? front.close(r) : r(undefined)));
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
/** Reads files one at a time, so each is a request of its own. */
const readFiles = (files: number[], id: string): Promise<string> =>
  containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, id, "sh", "-c", files.map((i) => `md5sum /data/f${i}.bin`).join("; ")], 120_000);

describe("a registry that redirects blobs to storage", () => {
  it("sends a blob's later Range requests straight to storage, without credentials, and reads right", async () => {
    const before = { redirects: total(seen.redirects), storage: total(seen.storage) };
    const files = [0, 1, 2, 3, 4, 5];
    expect(await readFiles(files, "first")).toBe(sums(files));
    const redirects = total(seen.redirects) - before.redirects;
    const storage = total(seen.storage) - before.storage;
    // every request reached storage; only the first of each blob (and any sent before it came back) went through the registry
    expect(storage).toBeGreaterThan(files.length);
    expect(redirects).toBeLessThan(storage / 2);
    const status = JSON.parse((await run("curl", ["-sf", "--unix-socket", augur.apiSocket, "http://augur/cache/status"])).stdout) as { blobLocations: { direct: number; redirected: number } };
    expect(status.blobLocations.direct).toBeGreaterThan(0);
    expect(status.blobLocations.direct + status.blobLocations.redirected).toBeGreaterThanOrEqual(storage - 2);
  });

  it("once the storage URLs have expired, asks the registry again and the reads go on", async () => {
    generation++;
    const before = { redirects: total(seen.redirects), expired: seen.expired };
    const files = [6, 7, 8, 9, 10, 11];
    expect(await readFiles(files, "after-expiry")).toBe(sums(files));
    expect(seen.expired - before.expired).toBeGreaterThan(0);
    expect(total(seen.redirects) - before.redirects).toBeGreaterThan(0);
  });
});
