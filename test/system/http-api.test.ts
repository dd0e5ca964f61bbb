// The HTTP API (the seed's section 6) through a real augur with lazily pulled
// layers: every endpoint, and bad input answered with a 4xx naming the problem.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";
import { buildClusterManifest } from "../../snapshotter/manifest/cluster-manifest.js";
import { readTraces } from "../../snapshotter/predict/predict-command.js";

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let image: BuiltImage;

/** curl against the API socket: status code and body. */
async function api(method: string, path: string, body?: string | Buffer): Promise<{ status: number; body: string }> {
  const args = ["-s", "-o", "-", "-w", "\n%{http_code}", "--unix-socket", augur.apiSocket, "-X", method, `http://augur${path}`];
  if (body !== undefined) args.push("--data-binary", "@-", "-H", "content-type: application/json");
  const r = await run("curl", args, body === undefined ? {} : { input: body.toString() });
  const at = r.stdout.lastIndexOf("\n");
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}
const json = (r: { body: string }): Record<string, unknown> => JSON.parse(r.body) as Record<string, unknown>;

beforeAll(async () => {
  dir = scratchDir("as-api-");
  registry = await startRegistry(dir);
  // started with an open umask: augur must set its sockets' modes itself
  const umask = process.umask(0);
  try {
    augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy"] });
  } finally {
    process.umask(umask);
  }
  containerd = await startContainerd(dir, augur.socket);
  image = await buildImage(join(dir, "img"), { layers: [busyboxLayer(), [{ type: "file", path: "big.bin", content: Buffer.alloc(2 << 20, 7) }]], cmd: ["/bin/sh"] });
  const ref = `${registry.host}/api/img:1`;
  pushImage(image, ref);
  const r = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(r.stderr);
}, 180_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("HTTP API", () => {
  it("listens on a unix socket only root can connect to, as the snapshotter socket is, whatever the umask", () => {
    expect(statSync(augur.apiSocket).mode & 0o777).toBe(0o600);
    expect(statSync(augur.socket).mode & 0o777).toBe(0o600);
  });

  it("GET /healthz, /metrics and /cache/status", async () => {
    expect(await api("GET", "/healthz")).toEqual({ status: 200, body: "ok\n" });
    const metrics = await api("GET", "/metrics");
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain("augur_read_bytes_total");
    const status = json(await api("GET", "/cache/status"));
    expect(status.cache).toMatchObject({ hitRate: expect.any(Number) as number });
    expect(status.prefetch).toMatchObject({ enabled: true, predictor: "replay" });
    expect((status.layers as unknown[]).length).toBe(2);
  });

  it("POST /prefetch/layer/{digest} fetches a mounted layer whole and GET reports its progress", async () => {
    const layer = image.layerDigests[1] as string;
    const started = await api("POST", `/prefetch/layer/${layer}`);
    expect(started.status).toBe(202);
    expect(json(started)).toMatchObject({ layer, totalBytes: image.layerSizes[1] });
    await waitFor("the layer to be complete", async () => json(await api("GET", `/prefetch/layer/${layer}`)).state === "complete", 60_000);
    expect(json(await api("GET", `/prefetch/layer/${layer}`))).toMatchObject({ fetchedBytes: image.layerSizes[1], totalBytes: image.layerSizes[1] });
  }, 90_000);

  it("answers bad prefetch requests with 4xx naming the problem", async () => {
    const unknown = await api("POST", `/prefetch/layer/sha256:${"0".repeat(64)}`);
    expect(unknown.status).toBe(404);
    expect(json(unknown).error).toMatch(/is not mounted by this augur/);
    const malformed = await api("GET", "/prefetch/layer/latest");
    expect(malformed.status).toBe(400);
    expect(json(malformed).error).toMatch(/"latest" is not a layer digest/);
    const method = await api("DELETE", `/prefetch/layer/${image.layerDigests[0]}`);
    expect(method.status).toBe(405);
    expect((await api("GET", "/no/such/thing")).status).toBe(404);
  });

  it("POST /manifest/parse answers a workload's layer preference and granularity; bad input is a 4xx", async () => {
    const m = buildClusterManifest(readTraces(join(import.meta.dirname, "..", "..", "docs", "traces")), { granularity: 8, tool: "test" });
    const python = m.workloads.find((w) => w.image?.endsWith("/bench/python:plain"));
    const bySig = await api("POST", `/manifest/parse?signature=${python?.signature}`, JSON.stringify(m));
    expect(bySig.status).toBe(200);
    expect(json(bySig).workloads).toEqual([expect.objectContaining({ signature: python?.signature, layerPreference: python?.layerPreference, granularity: 8 })]);
    const byImage = await api("POST", `/manifest/parse?image=${encodeURIComponent(python?.manifest ?? "")}`, JSON.stringify(m));
    expect(json(byImage).workloads).toHaveLength(1);
    const none = await api("POST", `/manifest/parse?signature=sha256:${"0".repeat(64)}`, JSON.stringify(m));
    expect(none.status).toBe(404);
    const broken = await api("POST", "/manifest/parse", "{ not json");
    expect(broken.status).toBe(400);
    expect(json(broken).error).toMatch(/not JSON/);
    const wrong = await api("POST", "/manifest/parse", JSON.stringify({ ...m, schemaVersion: 9 }));
    expect(wrong.status).toBe(400);
    expect(json(wrong).error).toMatch(/schemaVersion: 9 is not 1/);
    const empty = await api("POST", "/manifest/parse", "");
    expect(empty.status).toBe(400);
    const huge = await api("POST", "/manifest/parse", Buffer.alloc((32 << 20) + 10, 0x20));
    expect(huge.status).toBe(413);
    expect((await api("GET", "/manifest/parse")).status).toBe(405);
  }, 60_000);
});
