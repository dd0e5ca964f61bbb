// A registry that trickles a layer (a kilobyte a second, never stopping):
// the container that needs it fails in seconds, not minutes (its reads with
// EIO, or its start with an error naming the host and the layer), augur logs
// the host and the layer, and an image from another registry keeps being
// served meanwhile.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes } from "node:crypto";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";

let dir: string;
let registry: Registry;
let front: Server;
let frontHost: string;
let augur: Augur;
let containerd: Containerd;
let slow: BuiltImage;
let fast: BuiltImage;
const timers = new Set<NodeJS.Timeout>();
const refs = { slow: "", fast: "" };

/** A front for the registry that passes everything through but sends `digest`'s blob 1 KB a second. */
function trickleFront(upstream: string, digest: () => string): Server {
  const [host, port] = upstream.split(":");
  return createServer((req, res) => {
    const up = request({ host, port: Number(port), path: req.url, method: req.method, headers: req.headers }, (u) => {
      res.writeHead(u.statusCode ?? 502, u.headers);
      if (!(req.method === "GET" && req.url?.includes(`/blobs/${digest()}`))) {
        u.pipe(res);
        return;
      }
      const held: Buffer[] = [];
      u.on("data", (b: Buffer) => held.push(b));
      let pending = Buffer.alloc(0);
      const t = setInterval(() => {
        if (pending.length === 0 && held.length) pending = Buffer.concat(held.splice(0));
        if (pending.length === 0) return;
        res.write(pending.subarray(0, 1024));
        pending = pending.subarray(1024);
      }, 1000);
      timers.add(t);
      res.on("close", () => {
        clearInterval(t);
        u.destroy();
      });
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
}

beforeAll(async () => {
  dir = scratchDir("as-slowreg-");
  registry = await startRegistry(dir);
  const data = (tag: string) => [{ type: "dir" as const, path: "data" }, { type: "file" as const, path: `data/${tag}.bin`, content: randomBytes(1 << 20) }];
  slow = await buildImage(join(dir, "slow"), { layers: [busyboxLayer(), data("slow")], cmd: ["/bin/sh"] });
  fast = await buildImage(join(dir, "fast"), { layers: [busyboxLayer(), data("fast")], cmd: ["/bin/sh"] });
  pushImage(slow, `${registry.host}/slowreg/slow:1`);
  pushImage(fast, `${registry.host}/slowreg/fast:1`);
  front = trickleFront(registry.host, () => slow.layerDigests[1] as string);
  await new Promise<void>((r) => front.listen(0, "127.0.0.1", r));
  frontHost = `127.0.0.1:${(front.address() as AddressInfo).port}`;
  refs.slow = `${frontHost}/slowreg/slow:1`;
  refs.fast = `${registry.host}/slowreg/fast:1`;
  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy"] });
  containerd = await startContainerd(dir, augur.socket);
}, 180_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  for (const t of timers) clearInterval(t);
  front?.closeAllConnections();
  await new Promise((r) => (front ? front.close(r) : r(undefined)));
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

const rpull = async (ref: string): Promise<void> => {
  const r = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
};

describe("a registry that trickles a layer", () => {
  it("fails what needs that layer in seconds, names host and layer, and serves another registry's image meanwhile", async () => {
    await rpull(refs.slow);
    await rpull(refs.fast);
    const started = performance.now();
    const [slowRun, fastRun] = await Promise.all([
      containerd.ctr(["run", "--snapshotter", "augur", "--rm", refs.slow, "slow-run", "sh", "-c", "md5sum /data/slow.bin"], 120_000),
      containerd.ctr(["run", "--snapshotter", "augur", "--rm", refs.fast, "fast-run", "sh", "-c", "md5sum /data/fast.bin"], 120_000),
    ]);
    const took = performance.now() - started;
    expect(fastRun.code, fastRun.stderr).toBe(0);
    expect(fastRun.stdout).toMatch(/^[0-9a-f]{32}  \/data\/fast\.bin/);
    expect(slowRun.code, JSON.stringify(slowRun)).not.toBe(0);
    // it fails where it waited for the layer: the container's reads (EIO), or its start, which then names host and layer
    const said = `${slowRun.stdout}${slowRun.stderr}`;
    const named = said.includes(frontHost) && said.includes(slow.layerDigests[1] as string) && said.includes("given up");
    expect(named || /Input\/output error/.test(said), said).toBe(true);
    // a kilobyte a second would take 17 minutes for the layer; the guard gives up within a few 5 s windows
    expect(took).toBeLessThan(45_000);
    const digest = slow.layerDigests[1] as string;
    const lines = augur.proc.log().split("\n").filter((l) => l.includes("given up") && l.includes(frontHost) && l.includes(digest));
    expect(lines.length, augur.proc.log().slice(-3000)).toBeGreaterThan(0);
  }, 180_000);
});
