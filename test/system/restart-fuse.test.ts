// augur killed (SIGKILL, at random instants) while containers read lazily
// served layers through FUSE, eStargz and indexed plain ones, with native
// copies off so nothing but FUSE serves them: after each restart the layers
// are mounted again and new containers read the same bytes; a container
// that was reading across the kill gets errors or right bytes, never wrong
// ones.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage } from "../../scripts/images/oci-image.js";
import { pushEstargzOf } from "../harness/estargz.js";

const FILES = 8;
const content = Array.from({ length: FILES }, () => randomBytes(512 << 10));
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");
/** What `md5sum /data/*` prints for the image's files. */
const SUMS = content.map((c, i) => `${md5(c)}  /data/f${i}.bin`).join("\n") + "\n";

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
const refs = { plain: "", estargz: "" };
const root = (): string => join(dir, "r");

const ctrRemote = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  run("ctr-remote", ["--address", containerd.address, ...args], { timeoutMs: 120_000 });

beforeAll(async () => {
  dir = scratchDir("as-restart-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: root(), extraArgs: ["--no-native-copy"] });
  containerd = await startContainerd(dir, augur.socket);
  const image = await buildImage(join(dir, "plain"), {
    layers: [busyboxLayer(), [{ type: "dir", path: "data" }, ...content.map((c, i) => ({ type: "file" as const, path: `data/f${i}.bin`, content: c }))]],
    cmd: ["/bin/sh"],
  });
  refs.plain = `${registry.host}/restart/plain:1`;
  refs.estargz = `${registry.host}/restart/estargz:1`;
  pushImage(image, refs.plain);
  await pushEstargzOf(containerd, refs.plain, refs.estargz);
  for (const ref of [refs.plain, refs.estargz]) {
    const pulled = await ctrRemote(["images", "rpull", "--plain-http", "--snapshotter", "augur", ref]);
    if (pulled.code !== 0) throw new Error(`rpull ${ref}: ${pulled.stderr}`);
  }
  // the plain image's first run streams its layers whole and indexes them; from then on they are read by index
  expect(await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", refs.plain, "first", "md5sum", ...content.map((_, i) => `/data/f${i}.bin`)], 120_000)).toBe(SUMS);
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

/**
 * A container that reads every file of the image, over and over, until it is
 * killed; its last full pass lands in a host directory (its own tools are on
 * FUSE layers too, so nothing in it can be asked once augur is gone).
 */
async function reader(ref: string, id: string): Promise<string> {
  const out = join(dir, `out-${id}`);
  mkdirSync(out);
  const loop = "while true; do md5sum /data/f*.bin > /out/next 2>/dev/null && mv /out/next /out/sums; sleep 0.05; done";
  await containerd.ctrOk(["run", "-d", "--snapshotter", "augur", "--mount", `type=bind,src=${out},dst=/out,options=rbind:rw`, ref, id, "sh", "-c", loop], 120_000);
  return join(out, "sums");
}

async function stopReader(id: string): Promise<void> {
  await containerd.ctr(["tasks", "kill", "-s", "SIGKILL", id]);
  // a task can be deleted once it has stopped
  await waitFor(`${id} to stop`, async () => (await containerd.ctr(["tasks", "delete", id])).code === 0, 30_000);
  await containerd.ctrOk(["containers", "rm", id]);
}

describe("augur killed while containers read through FUSE", () => {
  it("mounts eStargz and indexed plain layers again after each SIGKILL, and nothing reads wrong bytes", async () => {
    let verifiedPasses = 0;
    for (let round = 0; round < 3; round++) {
      const ids = { plain: `plain-${round}`, estargz: `esgz-${round}` };
      const sums = { [ids.plain]: await reader(refs.plain, ids.plain), [ids.estargz]: await reader(refs.estargz, ids.estargz) };
      // kill at a random instant while both read
      await new Promise((r) => setTimeout(r, 300 + Math.random() * 1200));
      await augur.stop("SIGKILL");
      augur = await startAugur(dir, { root: root(), socket: augur.socket, extraArgs: ["--no-native-copy"], logName: `augur-${round + 1}.log` });
      await containerd.reachSnapshotter();
      // the layers are served through FUSE again, by the new process
      const status = JSON.parse((await run("curl", ["-sf", "--unix-socket", augur.apiSocket, "http://augur/cache/status"])).stdout) as { layers: { format: string }[] };
      expect(status.layers.filter((l) => l.format === "estargz").length).toBeGreaterThanOrEqual(2);
      expect(status.layers.some((l) => l.format === "indexed" || l.format === "cached-blob")).toBe(true);
      // new containers read every byte right
      for (const ref of [refs.plain, refs.estargz]) {
        const out = await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, `check-${round}-${ref === refs.plain ? "p" : "e"}`, "md5sum", ...content.map((_, i) => `/data/f${i}.bin`)], 120_000);
        expect(out, ref).toBe(SUMS);
      }
      // the readers that lived through the kill: each full pass they finished is right
      for (const id of [ids.plain, ids.estargz]) {
        const last = sums[id] as string;
        if (existsSync(last)) {
          expect(readFileSync(last, "utf8"), id).toBe(SUMS);
          verifiedPasses++;
        }
        await stopReader(id);
      }
    }
    // the readers did read through the kills: passes they finished were checked
    expect(verifiedPasses).toBeGreaterThan(0);
  }, 600_000);
});
