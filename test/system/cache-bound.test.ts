// A workload larger than --cache-size on two augurs sharing one cache
// directory: the bound holds for the directory, data is evicted while
// containers still read it, and every container reads correct data.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { AUGUR_BIN } from "../harness/augur.js";
import { rpull, startNode, stopNodes, type Node } from "../harness/node.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage } from "../../scripts/images/oci-image.js";

const BOUND = 8 << 20;
// per image: two layers of 5 MiB of random bytes (gzip keeps them that size): 20 MiB between both, over twice the bound
const files = [0, 1].map(() => [0, 1].map(() => randomBytes(5 << 20)));
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");
const sums = (img: number): string => files[img]?.map((c, i) => `${md5(c)}  /data/f${i}.bin`).join("\n") + "\n";

let dir: string;
let cacheDir: string;
let registry: Registry;
const nodes: Node[] = [];
const refs: string[] = [];

beforeAll(async () => {
  dir = scratchDir("as-bound-");
  cacheDir = join(dir, "cache");
  registry = await startRegistry(dir);
  for (const name of ["a", "b"]) {
    nodes.push(await startNode(dir, name, ["--cache-dir", cacheDir, "--cache-size", String(BOUND), "--no-prefetch", "--no-native-copy"], { root: join(dir, name, "root") }));
  }
  for (const [img, content] of files.entries()) {
    const image = await buildImage(join(dir, `img${img}`), {
      layers: [busyboxLayer(), ...content.map((c, i) => [{ type: "dir" as const, path: "data" }, { type: "file" as const, path: `data/f${i}.bin`, content: c }])],
      cmd: ["/bin/sh"],
    });
    refs.push(`${registry.host}/bound/app${img}:1`);
    pushImage(image, refs[img] as string);
  }
}, 300_000);

afterAll(async () => {
  await stopNodes(nodes);
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("a workload larger than the shared cache's bound", () => {
  it("keeps the directory within the bound while containers on both augurs read correct data", async () => {
    for (const [i, n] of nodes.entries()) {
      const p = await rpull(n.containerd, refs[i] as string);
      expect(p.code, p.stderr).toBe(0);
    }
    // both read everything three times over, at once: each pass finds some of its data evicted by the other
    const loop = "for i in 1 2 3; do md5sum /data/f0.bin /data/f1.bin; done";
    const runs = await Promise.all(nodes.map((n, i) => n.containerd.ctr(["run", "--snapshotter", "augur", "--rm", refs[i] as string, `bound-${i}`, "sh", "-c", loop], 180_000)));
    for (const [i, r] of runs.entries()) {
      expect(r.stderr).toBe("");
      expect(r.stdout).toBe(sums(i).repeat(3));
    }
    const st = await run(process.execPath, [AUGUR_BIN, "cache", "status", "--cache-dir", cacheDir, "--cache-size", String(BOUND), "--json"]);
    const s = JSON.parse(st.stdout) as { usedBytes: number; maxBytes: number };
    expect(s.maxBytes).toBe(BOUND);
    expect(s.usedBytes).toBeLessThanOrEqual(BOUND);
    const evicted = await Promise.all(nodes.map(async (n) => {
      const m = await run("curl", ["-sf", "--unix-socket", n.augur.apiSocket, "http://augur/metrics"]);
      return Number(/^augur_cache_evictions_total (\d+)$/m.exec(m.stdout)?.[1] ?? NaN);
    }));
    expect(evicted[0] as number + (evicted[1] as number)).toBeGreaterThan(0);
  });
});
