// Access points where workloads begin reading: which to add (pure), and an
// index rebuilt with them that serves the same bytes while fetching less.
import { describe, expect, it } from "vitest";
import { gzipSync } from "node:zlib";
import { layerTar, type LayerEntry } from "../../../scripts/images/oci-image.js";
import { buildTarIndex } from "../../../snapshotter/layer/tar-index.js";
import { gzipBlockBoundaries } from "../../../snapshotter/layer/decoders.js";
import { mergedPoints, pointsToAdd, ReadStartLog, streamOffsets, thinPoints } from "../../../snapshotter/layer/access-points.js";
import { parseTarIndex, serializeTarIndex } from "../../../snapshotter/layer/tar-index-codec.js";
import { thinIndex } from "../../../snapshotter/layer/thin-index.js";
import { Readable } from "node:stream";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import { chunks, countingSource, noise, rawTar, sha256 } from "./helpers.js";

const KiB = 1 << 10;
const MiB = 1 << 20;
const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

describe("ReadStartLog", () => {
  it("a lookup or a file's first read starts at the headers its checks read: the root, each parent directory (once), the entry", () => {
    const log = new ReadStartLog();
    log.lookup("usr/share/locale/locale.alias");
    log.lookup("usr/share/zoneinfo");
    log.read("usr/share/zoneinfo", 0, 100);
    log.read("usr/lib/os.py", 0, 10);
    log.read("usr/lib/os.py", 10, 10); // continues the read before it
    expect(log.starts).toEqual([
      { path: "", offset: 0 }, { path: "usr", offset: 0 }, { path: "usr/share", offset: 0 }, { path: "usr/share/locale", offset: 0 },
      { path: "usr/share/locale/locale.alias", offset: 0 }, { path: "usr/share/zoneinfo", offset: 0 },
      { path: "usr/lib", offset: 0 }, { path: "usr/lib/os.py", offset: 0 },
    ]);
  });
});

describe("pointsToAdd", () => {
  it("adds the boundary before each start that is far from every point, once for starts close together", () => {
    const existing = [0, 1000];
    const boundaries = [0, 100, 400, 650, 900, 1000, 1200, 1700];
    // 80: near 0; 500: boundary 400; 520: no boundary nearer than the 400 just added; 700: boundary 650;
    // 1100: near 1000; 1750: boundary 1700
    expect(pointsToAdd(existing, [80, 500, 520, 700, 1100, 1750], boundaries, 100)).toEqual([400, 650, 1700]);
  });

  it("adds nothing when the boundary before a start brings the point less than near/2 closer", () => {
    expect(pointsToAdd([0], [500], [0, 30, 480], 100)).toEqual([480]);
    expect(pointsToAdd([0], [500], [0, 40], 100)).toEqual([]); // 40 closer: not worth a window
    expect(pointsToAdd([0], [500], [0], 100)).toEqual([]);
    expect(pointsToAdd([100], [50], [100, 200], 10)).toEqual([]); // before the first point: none to start from
  });

  it("stops at max", () => {
    expect(pointsToAdd([0], [1000, 2000, 3000], [0, 1000, 2000, 3000], 100, 2)).toEqual([1000, 2000]);
  });

  it("a thin index keeps the point each start decodes from, and one every gap of the rest", () => {
    const existing = [0, 100, 200, 300, 400, 500, 600, 700, 800, 900];
    // 250 decodes from 200, 610 and 650 from 600; of the rest one every 300 from the last kept
    expect(thinPoints(existing, [250, 610, 650], 300)).toEqual([0, 200, 500, 600, 900]);
    expect(thinPoints(existing, [], 1000)).toEqual([0]);
    expect(thinPoints(existing, [], 100)).toEqual(existing);
  });

  it("merges existing and added points, ascending and distinct", () => {
    expect(mergedPoints([0, 500, 1000], [250, 500, 750])).toEqual([0, 250, 500, 750, 1000]);
  });
});

describe("an index with access points where reads begin", () => {
  // 40 files of 48 KiB that compress to about half, then the ones a workload reads
  const names = Array.from({ length: 40 }, (_, i) => `lib/m${String(i).padStart(2, "0")}.py`);
  const content = new Map(names.map((n, i) => [n, noise(48 * KiB, i + 1)]));
  const entries: LayerEntry[] = [{ type: "dir", path: "lib" }, ...names.map((n): LayerEntry => ({ type: "file", path: n, content: content.get(n) as Buffer }))];
  const read = [names[7], names[19], names[20], names[33]] as string[];

  it("keeps the old points, adds the block boundary before each read, and serves the same bytes fetching less", async () => {
    const gz = gzipSync(await layerTar(entries));
    const digest = sha256(gz);
    const plain = await buildTarIndex(chunks(gz), { digest, mediaType: GZIP, spanSize: 1 * MiB });
    expect(plain.spans.length).toBeLessThanOrEqual(2);

    const starts = streamOffsets(plain, [...read.map((path) => ({ path, offset: 0 })), { path: "not/there", offset: 0 }, { path: names[7] as string, offset: 999 * KiB }]);
    expect(starts).toHaveLength(read.length); // unknown files and offsets past a file's end are skipped
    const boundaries = await gzipBlockBoundaries(chunks(gz));
    expect(boundaries.length).toBeGreaterThan(10);
    expect(boundaries).toEqual([...boundaries].sort((a, b) => a - b));
    const existing = plain.spans.map((s) => s.out);
    const added = pointsToAdd(existing, starts, boundaries);
    expect(added.length).toBeGreaterThanOrEqual(2);
    for (const b of added) expect(boundaries).toContain(b);

    const at = mergedPoints(existing, added);
    const refined = await buildTarIndex(chunks(gz), { digest, mediaType: GZIP, spanSize: 1 * MiB, accessAt: at });
    expect(refined.spans.map((s) => s.out)).toEqual(at); // exactly the points asked for
    expect(refined.diffId).toBe(plain.diffId);
    expect(refined.entries).toEqual(plain.entries);

    let before = 0;
    let after = 0;
    for (const path of names) {
      const a = countingSource(gz);
      const b = countingSource(gz);
      const want = content.get(path) as Buffer;
      expect((await new TarLayerIndex(plain, a).readFile(path, 0, want.length)).equals(want)).toBe(true);
      expect((await new TarLayerIndex(refined, b).readFile(path, 0, want.length)).equals(want)).toBe(true);
      expect(b.requested).toBeLessThanOrEqual(a.requested);
      if (read.includes(path)) {
        before += a.requested;
        after += b.requested;
      }
    }
    // the files read were fetched from their own points, not from the layer's start
    expect(after).toBeLessThan(before * 0.6);
  });

  it("a thin index to publish: far fewer points and bytes, the read files still fetched from their own points, every file served right", async () => {
    const gz = gzipSync(await layerTar(entries));
    const digest = sha256(gz);
    // a point every 64 KiB of output, then the points where the read files begin
    const full = await buildTarIndex(chunks(gz), { digest, mediaType: GZIP, spanSize: 64 * KiB });
    const starts = read.map((path) => ({ path, offset: 0 }));
    const boundaries = await gzipBlockBoundaries(chunks(gz));
    const existing = full.spans.map((s) => s.out);
    const refined = await buildTarIndex(chunks(gz), { digest, mediaType: GZIP, spanSize: 64 * KiB, accessAt: mergedPoints(existing, pointsToAdd(existing, streamOffsets(full, starts), boundaries)) });
    const fullBytes = serializeTarIndex(refined).bytes;

    const thin = await thinIndex(fullBytes, () => Readable.from(chunks(gz)), starts, 1 * MiB);
    expect(thin).toBeDefined();
    if (!thin) return;
    expect(thin.spansBefore).toBe(refined.spans.length);
    expect(thin.spans).toBeLessThan(refined.spans.length / 2);
    expect(thin.bytes.length).toBeLessThan(fullBytes.length / 2);
    expect(thin.trimmed).toBeGreaterThan(0);
    const t = parseTarIndex(thin.bytes);
    expect(t.entries).toEqual(refined.entries);
    expect(t.diffId).toBe(refined.diffId);
    for (const path of names) {
      const a = countingSource(gz);
      const b = countingSource(gz);
      const want = content.get(path) as Buffer;
      expect((await new TarLayerIndex(refined, a).readFile(path, 0, want.length)).equals(want)).toBe(true);
      expect((await new TarLayerIndex(t, b).readFile(path, 0, want.length)).equals(want)).toBe(true);
      // the files the trace read cost what they cost with the full index
      if (read.includes(path)) expect(b.requested).toBeLessThanOrEqual(a.requested + 64 * KiB);
    }
    // nothing to drop: no thin copy
    expect(await thinIndex(thin.bytes, () => Readable.from(chunks(gz)), starts, 1 * MiB)).toBeUndefined();
  });

  it("finds files by clean path whatever the tar calls them (./usr/..., as image builders write)", async () => {
    const mtime = new Date("2024-01-01T00:00:00Z");
    const t = await rawTar([
      { header: { name: "./", type: "directory", mtime } },
      { header: { name: "./usr/", type: "directory", mtime } },
      { header: { name: "./usr/a.py", size: 5, mtime }, content: Buffer.from("hello") },
    ]);
    const idx = await buildTarIndex(chunks(t), { digest: sha256(t), mediaType: "application/vnd.oci.image.layer.v1.tar" });
    const [start] = streamOffsets(idx, [{ path: "usr/a.py", offset: 2 }]);
    expect(t.subarray(start, (start as number) + 3).toString()).toBe("llo");
    // from a file's start, or a lookup of any entry: where its tar header begins
    const [file, dir] = streamOffsets(idx, [{ path: "usr/a.py", offset: 0 }, { path: "usr", offset: 0 }]).reverse();
    expect(t.subarray(file, (file as number) + 10).toString()).toBe("./usr/a.py");
    expect(t.subarray(dir, (dir as number) + 6).toString()).toBe("./usr/");
  });

  it("a truncated blob fails the boundary scan", async () => {
    const gz = gzipSync(await layerTar(entries));
    await expect(gzipBlockBoundaries(chunks(gz.subarray(0, gz.length - 100)))).rejects.toThrow(/gzip stream truncated/);
  });
});
