// Two nodes' worth of augur on one host sharing one cache directory (as the
// VMs or containerd instances of a host would): each with its own containerd
// and root, one --cache-dir. The same image pulled and started on both at
// once is fetched from the registry once, every container reads correct data,
// and `augur cache` sees both instances through the shared ledger.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { AUGUR_BIN } from "../harness/augur.js";
import { rpull, startNode, stopNodes, type Node } from "../harness/node.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";

const BIG = randomBytes(6 << 20);
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

let dir: string;
let cacheDir: string;
let registry: Registry;
const nodes: Node[] = [];
let image: BuiltImage;
let ref: string;

/** Bytes the registry served per layer blob, from its access log. */
function servedPerLayer(log: string, digests: string[]): Map<string, number> {
  const out = new Map(digests.map((d) => [d, 0]));
  for (const m of log.matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" (\d{3}) (\d+)/g)) {
    const d = m[1] as string;
    if (out.has(d) && (m[2] === "200" || m[2] === "206")) out.set(d, (out.get(d) ?? 0) + Number(m[3]));
  }
  return out;
}

beforeAll(async () => {
  dir = scratchDir("as-shared-");
  cacheDir = join(dir, "cache");
  registry = await startRegistry(dir);
  for (const name of ["a", "b"]) {
    nodes.push(await startNode(dir, name, ["--cache-dir", cacheDir, "--cache-size", "1GiB", "--no-prefetch"], { root: join(dir, name, "root") }));
  }
  image = await buildImage(join(dir, "img"), {
    layers: [busyboxLayer(), [{ type: "dir", path: "app" }, { type: "file", path: "app/big.bin", content: BIG }]],
    cmd: ["/bin/sh"],
  });
  ref = `${registry.host}/shared/app:1`;
  pushImage(image, ref);
}, 300_000);

afterAll(async () => {
  await stopNodes(nodes);
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("one cache directory, two augurs", () => {
  it("the same image started on both at once is fetched from the registry once", async () => {
    const before = (await registry.settledLog()).length;
    const pulls = await Promise.all(
      nodes.map((n) => rpull(n.containerd, ref)),
    );
    for (const p of pulls) expect(p.code, p.stderr).toBe(0);
    const runs = await Promise.all(
      nodes.map((n, i) => n.containerd.ctr(["run", "--snapshotter", "augur", "--rm", ref, `shared-${i}`, "md5sum", "/app/big.bin"], 120_000)),
    );
    for (const r of runs) {
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(`${md5(BIG)}  /app/big.bin\n`);
    }
    // every layer crossed the network once: no more bytes than its blob, between both nodes
    const served = servedPerLayer((await registry.settledLog()).slice(before), image.layerDigests);
    image.layerDigests.forEach((d, i) => {
      expect(served.get(d), d).toBeGreaterThan(0);
      expect(served.get(d), d).toBeLessThanOrEqual(image.layerSizes[i] as number);
    });
    const logs = nodes.map((n) => n.augur.proc.log()).join("\n");
    for (const d of image.layerDigests) {
      expect(logs.match(new RegExp(`layer streamed, verified and indexed layer=${d}`, "g")) ?? []).toHaveLength(1);
      expect(logs).toContain(`layer streamed by another augur on this cache; indexing its copy layer=${d}`);
    }
  });

  it("augur cache sees both instances and what they share", async () => {
    const status = await run(process.execPath, [AUGUR_BIN, "cache", "status", "--cache-dir", cacheDir, "--json"]);
    expect(status.code, status.stderr).toBe(0);
    const s = JSON.parse(status.stdout) as { instances: number; files: { blobs: number }; usedBytes: number };
    expect(s.instances).toBe(3); // the two servers and the command itself
    expect(s.files.blobs).toBe(image.layerDigests.length);
    const ls = await run(process.execPath, [AUGUR_BIN, "cache", "ls", "--cache-dir", cacheDir]);
    for (const d of image.layerDigests) expect(ls.stdout).toContain(d.slice(0, 19));
    // both servers report the directory's figures the same way
    const metrics = await Promise.all(nodes.map((n) => run("curl", ["-s", "--unix-socket", join(n.augur.root, "api.sock"), "http://augur/metrics"])));
    for (const m of metrics) {
      expect(m.stdout).toMatch(/^augur_cache_instances 2$/m);
      expect(m.stdout).toContain(`augur_cache_bytes{kind="blobs"} ${image.layerSizes.reduce((a, b) => a + b, 0)}\n`);
    }
  });
});
