// Collects access traces from real container runs through containerd, for
// `augur predict eval` (docs/prediction.md). One node (augur + containerd)
// pulls every workload image lazily from the benchmark registry (behind the
// shaped link, as in the benchmark) and runs each workload several times,
// interleaved, with the page cache dropped before each run so every run reads
// through augur. Native copies are off: a natively copied layer is not traced.
//
//   npm run collect-traces -- [--runs 4] [--workloads python,gcc,...] [--out DIR]
//
// The traces (and the layers' file lists, for the locality predictor) go to
// --out (default docs/traces), zstd-compressed.
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { compress } from "zstd-napi";
import { REPO, startAugur } from "../lib/augur.js";
import { startContainerd, type Containerd } from "../lib/containerd.js";
import { removeScratch, runOk, scratchDir } from "../lib/processes.js";
import { DEFAULT_CACHE, WORKLOADS, buildDebianImages, pushDebianImages, registryStorage } from "../images/debian-image.js";
import { startSlowRegistry } from "./netns.js";
import { cleanPath } from "../../snapshotter/layer/layer-index.js";
import { parseTarIndex } from "../../snapshotter/layer/tar-index-codec.js";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "4" },
    workloads: { type: "string", default: "python,gcc,py-web,py-data,node-tool,shell-tool,gcc-build" },
    out: { type: "string", default: join(REPO, "docs", "traces") },
    cache: { type: "string", default: DEFAULT_CACHE },
    rate: { type: "string", default: "100" },
    latency: { type: "string", default: "20" },
  },
});
const names = values.workloads.split(",").map((w) => w.trim());
for (const n of names) if (!WORKLOADS[n]) throw new Error(`unknown workload ${n} (known: ${Object.keys(WORKLOADS).join(", ")})`);
const runs = Number(values.runs);

function dropCaches(): void {
  writeFileSync("/proc/sys/vm/drop_caches", "3");
}

/** Runs a workload's image with its default command; resolves when it exits, failing without its ready marker. */
function runWorkload(c: Containerd, ref: string, id: string, ready: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("ctr", ["--address", c.address, "run", "--rm", "--snapshotter", "augur", ref, id], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 300_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (out.includes(ready)) resolve();
      else reject(new Error(`${id} exited ${code} without ${ready}:\n${out.slice(-2000)}`));
    });
  });
}

async function main(): Promise<void> {
  if (!existsSync(registryStorage(values.cache)) || names.some((n) => !existsSync(join(values.cache, "oci", n)))) {
    await pushDebianImages(await buildDebianImages(values.cache, names), values.cache);
  }
  const dir = scratchDir("augur-collect-");
  const reg = await startSlowRegistry(dir, registryStorage(values.cache), { rateMbit: Number(values.rate), latencyMs: Number(values.latency) });
  const hosts = join(dir, "certs.d");
  mkdirSync(join(hosts, reg.host), { recursive: true });
  writeFileSync(join(hosts, reg.host, "hosts.toml"), `server = "http://${reg.host}"\n`);
  const root = join(dir, "ar");
  const augur = await startAugur(dir, { root, extraArgs: ["--no-native-copy", "--no-prefetch", "--hosts-dir", hosts] });
  const containerd = await startContainerd(dir, augur.socket);
  try {
    for (const n of names) {
      const ref = `${reg.host}/${WORKLOADS[n]?.repo}:plain`;
      await runOk("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 600_000 });
    }
    for (let r = 1; r <= runs; r++) {
      for (const n of names) {
        const w = WORKLOADS[n];
        if (!w) continue;
        dropCaches();
        const t0 = performance.now();
        await runWorkload(containerd, `${reg.host}/${w.repo}:plain`, `${n}-${r}`, w.ready);
        console.log(`run ${r}/${runs} ${n}: ${((performance.now() - t0) / 1000).toFixed(2)} s`);
      }
    }
  } finally {
    await containerd.stop();
    await augur.stop();
    await reg.stop();
  }
  rmSync(values.out, { recursive: true, force: true });
  mkdirSync(values.out, { recursive: true });
  let bytes = 0;
  for (const f of readdirSync(join(root, "traces"))) {
    const z = compress(readFileSync(join(root, "traces", f)), { compressionLevel: 19 });
    writeFileSync(join(values.out, `${f}.zst`), z);
    bytes += z.length;
  }
  // the layers' regular files in layer order, from their indexes: the locality predictor's catalog
  const catalog: Record<string, { path: string; size: number }[]> = {};
  const idxDir = join(root, "cache", "indexes", "sha256");
  for (const hex of readdirSync(idxDir)) {
    const index = parseTarIndex(readFileSync(join(idxDir, hex)));
    catalog[index.digest] = index.entries.filter((e) => e.type === "file").map((e) => ({ path: cleanPath(e.path), size: e.size }));
  }
  const z = compress(Buffer.from(JSON.stringify(catalog)), { compressionLevel: 19 });
  writeFileSync(join(values.out, "catalog.json.zst"), z);
  console.log(`${readdirSync(values.out).length - 1} traces and the layer catalog in ${values.out} (${((bytes + z.length) / 1e6).toFixed(2)} MB)`);
  await removeScratch(dir);
}

await main();
