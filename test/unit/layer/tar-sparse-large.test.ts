import { describe, it, expect, onTestFinished } from "vitest";
import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync, ftruncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { layerTar } from "../../../scripts/images/oci-image.js";
import { buildTarIndex } from "../../../snapshotter/layer/tar-index.js";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import { chunks, countingSource, joinTars, noise, rawTar, sha256 } from "./helpers.js";

const MiB = 1 << 20;
const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

/** A 3 MiB file with ten data islands and holes between them, and its expected bytes. */
function sparseFile(dir: string): Buffer {
  const size = 3 * MiB;
  const want = Buffer.alloc(size);
  const fd = openSync(join(dir, "sparse.bin"), "w");
  ftruncateSync(fd, size);
  for (let i = 0; i < 10; i++) {
    const data = noise(5000 + i, i + 1);
    const at = i * 300 * 1024 + 4096 * 3;
    writeSync(fd, data, 0, data.length, at);
    data.copy(want, at);
  }
  closeSync(fd);
  return want;
}

describe.each([
  ["gnu", ["--format=gnu"]],
  ["pax 0.0", ["--format=posix", "--sparse-version=0.0"]],
  ["pax 0.1", ["--format=posix", "--sparse-version=0.1"]],
  ["pax 1.0", ["--format=posix", "--sparse-version=1.0"]],
])("sparse file written by GNU tar (%s)", (_name, flags) => {
  it("reads holes as zeros and data from the archive", async () => {
    const dir = mkdtempSync(join(tmpdir(), "augur-sparse-"));
    onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
    const want = sparseFile(dir);
    execFileSync("tar", ["-C", dir, "--sparse", ...flags, "-cf", join(dir, "l.tar"), "sparse.bin"]);
    const tarball = joinTars(readFileSync(join(dir, "l.tar")), await layerTar([{ type: "file", path: "after", content: "after\n" }]));
    const blob = gzipSync(tarball);
    const idx = await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: GZIP, spanSize: MiB });
    const rec = idx.entries.find((e) => e.path === "sparse.bin");
    expect(rec?.segments.length).toBeGreaterThan(4);
    const layer = new TarLayerIndex(idx, countingSource(blob));
    expect(layer.getAttr("sparse.bin")?.size).toBe(want.length);
    expect((await layer.readFile("sparse.bin", 0, want.length)).equals(want)).toBe(true);
    expect((await layer.readFile("sparse.bin", 12280, 30000)).equals(want.subarray(12280, 42280))).toBe(true);
    expect((await layer.readFile("after", 0, 10)).toString()).toBe("after\n");
  });
});

describe("files larger than 4 GiB", () => {
  it("indexes and reads past 4 GiB (PAX size, many gzip members)", async () => {
    const unit = noise(4096, 99);
    const member = gzipSync(Buffer.concat(Array.from({ length: 16384 }, () => unit)), { level: 1 }); // 64 MiB
    const size = 80 * 64 * MiB + 123; // 5 GiB + 123
    const tail = Buffer.alloc(123 + (512 - ((size % 512) || 512)));
    for (let i = 0; i < 123; i++) tail[i] = unit[i] as number;
    // the ustar size field says 0; the PAX record carries the real size, as for > 8 GiB files
    const header = await rawTar([{ header: { name: "huge.bin", size: 0, pax: { size: String(size) } } }]);
    const rest = joinTars(await layerTar([{ type: "file", path: "after", content: "after\n" }]));
    const blob = Buffer.concat([gzipSync(header), ...Array.from({ length: 80 }, () => member), gzipSync(tail), gzipSync(rest)]);
    const started = Date.now();
    const idx = await buildTarIndex(chunks(blob, MiB), { digest: sha256(blob), mediaType: GZIP, spanSize: 64 * MiB });
    const ms = Date.now() - started;
    console.log(`indexed ${(idx.uncompressedSize / MiB).toFixed(0)} MiB in ${ms} ms (${(idx.uncompressedSize / MiB / (ms / 1000)).toFixed(0)} MiB/s uncompressed)`);
    const src = countingSource(blob);
    const layer = new TarLayerIndex(idx, src);
    expect(layer.getAttr("huge.bin")?.size).toBe(size);
    const expectAt = (off: number, len: number): Buffer => {
      const b = Buffer.alloc(len);
      for (let i = 0; i < len; i++) b[i] = unit[(off + i) % 4096] as number;
      return b;
    };
    for (const off of [4 * 1024 * MiB - 10, 4 * 1024 * MiB + 7777, size - 200]) {
      expect((await layer.readFile("huge.bin", off, 100)).equals(expectAt(off, 100))).toBe(true);
    }
    expect((await layer.readFile("huge.bin", size - 50, 1000)).length).toBe(50);
    expect((await layer.readFile("after", 0, 10)).toString()).toBe("after\n");
    expect(src.requested).toBeLessThan(blob.length / 10);
  }, 120_000);
});
