// `npm run demo`: the main job end to end on this machine. Starts a local
// registry, augur and a containerd configured with augur; builds and pushes a
// small image; pulls it through augur and runs a container; prints what
// happened and how long each step took. Then what the node learned goes
// through the registry: it pushes the cluster manifest, and a second node
// (its own augur and containerd, empty root and cache) starts the image with
// random access to every layer from its first read and its files prefetched.
// Stops everything (unless --keep).
import { parseArgs } from "node:util";
import { existsSync, mkdirSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startRegistry } from "./lib/registry.js";
import { AUGUR_BIN, startAugur } from "./lib/augur.js";
import { startContainerd } from "./lib/containerd.js";
import { removeScratch, runOk, scratchDir, waitFor } from "./lib/processes.js";
import { buildImage, busyboxLayer, pushImage } from "./images/oci-image.js";

const { values } = parseArgs({ options: { keep: { type: "boolean", default: false } } });

const t0 = performance.now();
/** Seconds each step took, by its description. */
const took = new Map<string, number>();
const step = async <T>(what: string, fn: () => Promise<T> | T): Promise<T> => {
  const start = performance.now();
  const out = await fn();
  const s = (performance.now() - start) / 1000;
  took.set(what, s);
  console.log(`  ${what.padEnd(52)} ${s.toFixed(2)} s`);
  return out;
};
const sum = (...steps: string[]): number => steps.reduce((n, st) => n + (took.get(st) ?? NaN), 0);

/** Traces under `dir` whose text holds `part`. */
const tracesWith = (dir: string, part: string): number =>
  existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".jsonl") && readFileSync(join(dir, f), "utf8").includes(part)).length : 0;

const dir = scratchDir("augur-demo-");
console.log(`augur demo (working directory ${dir})`);
const registry = await step("start a registry (docker-registry on 127.0.0.1)", () => startRegistry(dir));
const augur = await step("start augur serve", () => startAugur(dir, { root: join(dir, "r") }));
const containerd = await step("start containerd with [proxy_plugins.augur]", () => startContainerd(dir, augur.socket));
let ok = false;
try {
  const ref = `${registry.host}/demo/hello:latest`;
  const image = await step("build a 3-layer image (busybox + app + config)", () =>
    buildImage(join(dir, "image"), {
      layers: [
        busyboxLayer(),
        [
          { type: "dir", path: "app" },
          { type: "file", path: "app/run.sh", mode: 0o755, content: '#!/bin/sh\necho "hello from a container whose layers augur serves"\necho "files in /app: $(ls /app | tr "\\n" " ")"\n[ -e /app/old.conf ] && echo "old.conf should be gone" || echo "old.conf deleted by a later layer: ok"\n' },
          { type: "file", path: "app/old.conf", content: "stale\n" },
        ],
        [
          { type: "whiteout", path: "app/old.conf" },
          { type: "file", path: "app/app.conf", content: "greeting=hello\n" },
        ],
      ],
      cmd: ["/app/run.sh"],
    }),
  );
  await step(`push it to ${ref}`, () => pushImage(image, ref));
  const pulled = await step("augur pull --plain-http (lazily)", () =>
    runOk(process.execPath, [AUGUR_BIN, "pull", "--plain-http", "--address", containerd.address, ref], { timeoutMs: 120_000 }));
  console.log(`    ${pulled.trim()}`);
  const out = await step("ctr run --snapshotter augur", () => containerd.ctrOk(["run", "--rm", "--snapshotter", "augur", ref, "demo"]));
  console.log("\ncontainer output:\n" + out.trimEnd().replace(/^/gm, "  | "));
  console.log("ctr snapshots --snapshotter augur tree:\n" + (await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "tree"])).trimEnd().replace(/^/gm, "  "));
  console.log("ctr snapshots --snapshotter augur usage:\n" + (await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "usage"])).trimEnd().replace(/^/gm, "  "));
  const lazy = readFileSync(augur.proc.logFile, "utf8").split("\n").filter((l) => l.includes("layer mounted lazily"));
  console.log(`augur served ${lazy.length} layers lazily through FUSE (augur's log):\n` + lazy.map((l) => `  ${l.replace(/^\S+ /, "")}`).join("\n"));

  // augur writes a trace's records a moment after they happen (and ends it when containerd removes the snapshot)
  await waitFor("the container's access trace on disk", () => tracesWith(join(augur.root, "traces"), '"kind":"access"') > 0, 10_000);
  console.log("\nwhat this node learned, through the registry to a node that never saw the image:");
  const cluster = `${registry.host}/demo/augur-cluster:latest`;
  const pushed = await step("augur manifest push --cluster (profile + indexes)", () =>
    runOk(process.execPath, [AUGUR_BIN, "manifest", "push", "--root", augur.root, "--plain-http", "--cluster", cluster], { timeoutMs: 60_000 }));
  console.log(`    ${pushed.trim()}`);
  const dir2 = join(dir, "node2");
  mkdirSync(dir2);
  const augur2 = await step("node 2: augur serve --cluster-manifest (empty root)", () =>
    startAugur(dir2, { root: join(dir2, "r"), extraArgs: ["--cluster-manifest", cluster] }));
  try {
    const containerd2 = await step("node 2: start its containerd", () => startContainerd(dir2, augur2.socket));
    try {
      await step("node 2: augur pull --plain-http", () =>
        runOk(process.execPath, [AUGUR_BIN, "pull", "-q", "--plain-http", "--address", containerd2.address, ref], { timeoutMs: 120_000 }));
      const out2 = await step("node 2: ctr run --snapshotter augur", () => containerd2.ctrOk(["run", "--rm", "--snapshotter", "augur", ref, "demo2"]));
      console.log(out2.trimEnd().replace(/^/gm, "  | "));
      const status = JSON.parse(await runOk("curl", ["-sf", "--unix-socket", augur2.apiSocket, "http://augur/cache/status"])) as {
        layers: { layer: string; format: string; predictedBytes: number; readHitBytes: number; readMissBytes: number }[];
      };
      console.log("node 2's layers (GET /cache/status): format, bytes prefetched, bytes read from the cache / fetched by reads");
      for (const l of status.layers) console.log(`  ${l.layer.slice(0, 19)}  ${l.format.padEnd(15)} ${String(l.predictedBytes).padStart(8)}  ${l.readHitBytes} / ${l.readMissBytes}`);
    } finally {
      await containerd2.stop();
    }
  } finally {
    await augur2.stop();
  }
  // The full pull to compare with: a containerd of its own (nothing cached), overlayfs.
  const dir3 = join(dir, "full-pull");
  mkdirSync(dir3);
  const containerd3 = await step("full pull: start a containerd of its own", () => startContainerd(dir3, join(dir3, "no-augur.sock")));
  try {
    await step("full pull: ctr images pull --snapshotter overlayfs", () => containerd3.ctrOk(["images", "pull", "--plain-http", "--snapshotter", "overlayfs", ref], 120_000));
    await step("full pull: ctr run --snapshotter overlayfs", () => containerd3.ctrOk(["run", "--rm", "--snapshotter", "overlayfs", ref, "demo3"]));
  } finally {
    await containerd3.stop();
  }
  const full = sum("full pull: ctr images pull --snapshotter overlayfs", "full pull: ctr run --snapshotter overlayfs");
  const first = sum("augur pull --plain-http (lazily)", "ctr run --snapshotter augur");
  const second = sum("node 2: augur pull --plain-http", "node 2: ctr run --snapshotter augur");
  console.log("\npull + run, side by side (a tiny image on a local registry: the shape, not the bench's numbers):");
  console.log(`  full pull, overlayfs                 ${full.toFixed(2)} s`);
  console.log(`  node 1, augur, first contact         ${first.toFixed(2)} s  (${(first / full).toFixed(2)} of the full pull)`);
  console.log(`  node 2, augur, profile from registry ${second.toFixed(2)} s  (${(second / full).toFixed(2)} of the full pull)`);
  console.log("  npm run bench measures the python image behind 100 Mbit/s: docs/benchmarks.md");
  ok = true;
} finally {
  if (values.keep && ok) {
    console.log("left running (--keep):");
    console.log(`  containerd pid ${containerd.proc.pid}: ctr --address ${containerd.address} ...`);
    console.log(`  augur pid ${augur.proc.pid}: socket ${augur.socket}, API ${augur.apiSocket}`);
    console.log(`  registry pid ${registry.proc.pid}: ${registry.host}`);
    console.log(`  stop them with: kill ${containerd.proc.pid} ${augur.proc.pid} ${registry.proc.pid}`);
    process.exit(0);
  }
  await containerd.stop();
  await augur.stop();
  await registry.stop();
  await removeScratch(dir);
  console.log(`${ok ? "demo finished" : "demo FAILED"} in ${((performance.now() - t0) / 1000).toFixed(1)} s; everything it started is stopped and removed.`);
}
