// Once a layer is completely cached, do new containers still pay for FUSE?
// Measures containers started after the first contact of the python bench
// image, twice: with augur's native copy (default) and with --no-native-copy
// (every read through FUSE). No network shaping: everything is already local.
// Cold runs drop the page cache first; warm runs repeat at once.
//
//   npm run bench:native [-- --runs 5]
import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { startAugur, type Augur } from "../lib/augur.js";
import { startContainerd, type Containerd } from "../lib/containerd.js";
import { startRegistry, type Registry } from "../lib/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../lib/processes.js";
import { DEFAULT_CACHE, WORKLOADS } from "../images/debian-image.js";

const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const runs = Number(values.runs);
const python = WORKLOADS.python;
if (!python) throw new Error("no python workload");
const workload = python;
/** Reads every file under /usr/lib: what a heavier start-up (a JVM, a big app) does. */
const READ_ALL = ["sh", "-c", "find /usr/lib -type f -print0 | xargs -0 cat > /dev/null && echo READY"];

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const dropCaches = (): void => writeFileSync("/proc/sys/vm/drop_caches", "3\n");

async function timeRun(c: Containerd, ref: string, id: string, cmd: string[]): Promise<number> {
  const started = process.hrtime.bigint();
  const r = await c.ctr(["run", "--snapshotter", "augur", "--rm", ref, id, ...cmd], 600_000);
  if (!r.stdout.includes("READY")) throw new Error(`${id}: ${r.stderr || r.stdout}`);
  return Number(process.hrtime.bigint() - started) / 1e9;
}

async function measure(native: boolean): Promise<Record<string, number>> {
  const dir = scratchDir("as-native-");
  let augur: Augur | undefined;
  let containerd: Containerd | undefined;
  let registry: Registry | undefined;
  try {
    registry = await startRegistry(dir);
    const ref = `${registry.host}/bench/python:plain`;
    execFileSync("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", `oci:${join(DEFAULT_CACHE, "oci", "python")}:plain`, `docker://${ref}`]);
    augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: native ? [] : ["--no-native-copy"] });
    containerd = await startContainerd(dir, augur.socket);
    const pulled = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 600_000 });
    if (pulled.code !== 0) throw new Error(pulled.stderr);
    await timeRun(containerd, ref, "first", workload.cmd); // first contact: streams and caches every layer
    const a = augur;
    if (native) await waitFor("native copies", () => (a.proc.log().match(/layer unpacked natively/g) ?? []).length >= 3, 300_000);
    const out: Record<string, number> = {};
    for (const [name, cmd] of [["python", workload.cmd], ["read /usr/lib", READ_ALL]] as const) {
      const cold: number[] = [];
      const warm: number[] = [];
      for (let i = 0; i < runs; i++) {
        dropCaches();
        cold.push(await timeRun(containerd, ref, `c${i}`, [...cmd]));
        warm.push(await timeRun(containerd, ref, `w${i}`, [...cmd]));
      }
      out[`${name} cold`] = median(cold);
      out[`${name} warm`] = median(warm);
    }
    return out;
  } finally {
    await containerd?.stop();
    await augur?.stop();
    await registry?.stop();
    await removeScratch(dir);
  }
}

const fuse = await measure(false);
const native = await measure(true);
const lines = [
  `Containers started after the first contact (python bench image, everything cached; median of ${runs}):`,
  "",
  "| workload | through FUSE (s) | native copy (s) | FUSE / native |",
  "| --- | --- | --- | --- |",
  ...Object.keys(fuse).map((k) => `| ${k} | ${(fuse[k] as number).toFixed(2)} | ${(native[k] as number).toFixed(2)} | ${((fuse[k] as number) / (native[k] as number)).toFixed(2)} |`),
];
process.stdout.write(`${lines.join("\n")}\n`);
