// `npm run demo`: the main job end to end on this machine. Starts a local
// registry, augur and a containerd configured with augur; builds and pushes a
// small image; pulls it through augur and runs a container; prints what
// happened and how long each step took; stops everything (unless --keep).
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { startRegistry } from "./lib/registry.js";
import { AUGUR_BIN, startAugur } from "./lib/augur.js";
import { startContainerd } from "./lib/containerd.js";
import { removeScratch, runOk, scratchDir } from "./lib/processes.js";
import { buildImage, busyboxLayer, pushImage } from "./images/oci-image.js";

const { values } = parseArgs({ options: { keep: { type: "boolean", default: false } } });

const t0 = performance.now();
const step = async <T>(what: string, fn: () => Promise<T> | T): Promise<T> => {
  const start = performance.now();
  const out = await fn();
  console.log(`  ${what.padEnd(52)} ${((performance.now() - start) / 1000).toFixed(2)} s`);
  return out;
};

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
