// The cache repairs itself: with augur stopped, a layer blob in the cache is
// spoiled on disk (same size, wrong bytes) and the ledger deleted. The next
// augur rebuilds the ledger from the files; a container reading the layer
// gets correct data, the spoiled bytes are dropped and fetched again.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, openSync, rmSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { AUGUR_BIN, startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { rpull } from "../harness/node.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";

const BIG = randomBytes(3 << 20);
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let image: BuiltImage;
let ref: string;
const cacheDir = (): string => join(dir, "r", "cache");

beforeAll(async () => {
  dir = scratchDir("as-repair-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy", "--no-prefetch"] });
  containerd = await startContainerd(dir, augur.socket);
  image = await buildImage(join(dir, "img"), { layers: [busyboxLayer(), [{ type: "file", path: "big.bin", content: BIG }]], cmd: ["/bin/sh"] });
  ref = `${registry.host}/repair/app:1`;
  pushImage(image, ref);
  const pulled = await rpull(containerd, ref);
  if (pulled.code !== 0) throw new Error(`rpull: ${pulled.stderr}`);
  const out = await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, "first", "md5sum", "/big.bin"], 120_000);
  if (out !== `${md5(BIG)}  /big.bin\n`) throw new Error(`first run read ${out}`);
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("a spoiled cache file and a lost ledger", () => {
  it("are repaired by the next augur: the ledger rebuilt from the files, the bad bytes fetched again", async () => {
    const layer = image.layerDigests[1] as string;
    const blob = join(cacheDir(), "blobs", "sha256", layer.slice(7));
    expect(existsSync(blob)).toBe(true);
    await augur.stop();
    // spoil 64 KiB in the middle of the layer blob, keeping its size; drop the ledger
    const fd = openSync(blob, "r+");
    writeSync(fd, Buffer.alloc(64 << 10, 0x55), 0, 64 << 10, 1 << 20);
    closeSync(fd);
    for (const f of ["ledger.db", "ledger.db-wal", "ledger.db-shm"]) rmSync(join(cacheDir(), f), { force: true });

    augur = await startAugur(dir, { root: join(dir, "r"), socket: augur.socket, extraArgs: ["--no-native-copy", "--no-prefetch"], logName: "augur-2.log" });
    await containerd.reachSnapshotter();
    const st = JSON.parse((await run(process.execPath, [AUGUR_BIN, "cache", "status", "--cache-dir", cacheDir(), "--json"])).stdout) as { files: { blobs: number; indexes: number } };
    expect(st.files.blobs).toBe(image.layerDigests.length); // rebuilt from the files
    expect(st.files.indexes).toBe(image.layerDigests.length);

    const before = (await registry.settledLog()).length;
    expect(await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, "second", "md5sum", "/big.bin"], 120_000)).toBe(`${md5(BIG)}  /big.bin\n`);
    expect(augur.proc.log()).toContain(`cached layer bytes failed their check on read; dropped, fetching them again file=blobs/sha256/${layer.slice(7)}`);
    // fetched again from the registry, by range
    const log = (await registry.settledLog()).slice(before);
    expect(log).toMatch(new RegExp(`"GET /v2/repair/app/blobs/${layer} HTTP/[\\d.]+" 206 \\d+`));
  });
});
