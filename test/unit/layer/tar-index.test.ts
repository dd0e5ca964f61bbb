import { describe, it, expect, beforeAll } from "vitest";
import { createHash } from "node:crypto";
import { gzipSync } from "node:zlib";
import { compress as zstdCompress } from "zstd-napi";
import { layerTar, type LayerEntry } from "../../../scripts/images/oci-image.js";
import { CELL_SIZE, buildTarIndex, type TarIndex } from "../../../snapshotter/layer/tar-index.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";
import { parseTarIndex, serializeTarIndex } from "../../../snapshotter/layer/tar-index-codec.js";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import { LayerVerificationError } from "../../../snapshotter/fetch/verification.js";
import { isNotFound } from "../../../snapshotter/errdefs/errors.js";
import { chunks, countingSource, joinTars, noise, rawTar, serializeTarIndexV3, sha256 } from "./helpers.js";

const MiB = 1 << 20;
const SPAN = 1 * MiB;
const MEDIA = {
  gzip: "application/vnd.oci.image.layer.v1.tar+gzip",
  zstd: "application/vnd.oci.image.layer.v1.tar+zstd",
  none: "application/vnd.oci.image.layer.v1.tar",
} as const;
type Kind = keyof typeof MEDIA;

const files: Record<string, Buffer> = {
  "etc/hostname": Buffer.from("augur\n"),
  "usr/bin/big": noise(24 * MiB, 7),
  "usr/lib/medium.so": noise(3 * MiB + 123, 3),
  "usr/share/doc/empty": Buffer.alloc(0),
  "opt/after-big.txt": Buffer.from("small file after the big one\n"),
};

const entries: LayerEntry[] = [
  { type: "dir", path: "etc" },
  { type: "file", path: "etc/hostname", content: files["etc/hostname"] as Buffer },
  { type: "dir", path: "usr/bin", mode: 0o750, uid: 10, gid: 20 },
  { type: "file", path: "usr/bin/big", content: files["usr/bin/big"] as Buffer, mode: 0o755 },
  { type: "file", path: "usr/lib/medium.so", content: files["usr/lib/medium.so"] as Buffer },
  { type: "file", path: "usr/share/doc/empty", content: Buffer.alloc(0) },
  { type: "link", path: "usr/bin/big-again", target: "usr/bin/big" },
  { type: "symlink", path: "usr/bin/alias", target: "big" },
  { type: "whiteout", path: "var/cache/old" },
  { type: "opaque", path: "var/lib" },
  { type: "file", path: "opt/after-big.txt", content: files["opt/after-big.txt"] as Buffer },
];

async function extras(): Promise<Buffer> {
  const mtime = new Date("2024-01-01T00:00:00Z");
  return rawTar([
    { header: { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666, mtime } },
    { header: { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0, mode: 0o660, mtime } },
    { header: { name: "run/fifo", type: "fifo", mode: 0o600, mtime } },
    {
      header: { name: "bin/ping", size: 4, mode: 0o755, mtime, pax: { "SCHILY.xattr.security.capability": "cap", "SCHILY.xattr.user.note": "héllo" } },
      content: Buffer.from("ping"),
    },
    { header: { name: `deep/${"d".repeat(120)}/${"n".repeat(150)}.txt`, size: 3, mtime }, content: Buffer.from("abc") },
  ]);
}

function compress(kind: Kind, t: Buffer): Buffer {
  if (kind === "gzip") return gzipSync(t);
  if (kind === "zstd") return zstdCompress(t);
  return t;
}

async function index(blob: Buffer, kind: Kind, spanSize = SPAN): Promise<TarIndex> {
  return buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: MEDIA[kind], spanSize });
}

/** v4 index bytes with their checksum made anew (to test what lies behind it). */
function reseal(bytes: Buffer): Buffer {
  createHash("sha256").update(bytes.subarray(40)).digest().copy(bytes, 8);
  return bytes;
}

let tarball: Buffer;
beforeAll(async () => {
  tarball = joinTars(await layerTar(entries), await extras());
});

describe.each(["gzip", "zstd", "none"] as const)("tar index over %s", (kind) => {
  let blob: Buffer;
  let idx: TarIndex;
  beforeAll(async () => {
    blob = compress(kind, tarball);
    idx = await index(blob, kind);
  });

  it("records the layer: digests, sizes, spans", () => {
    expect(idx.version).toBe(1);
    expect(idx.diffId).toBe(sha256(tarball));
    expect(idx.uncompressedSize).toBe(tarball.length);
    expect(idx.blobSize).toBe(blob.length);
    if (kind === "zstd") expect(idx.spans).toHaveLength(1); // one frame: one span
    else expect(idx.spans.length).toBeGreaterThan(20);
    expect(idx.spans[0]?.start).toBe(0);
    expect(idx.spans.at(-1)?.end).toBe(blob.length);
  });

  it("serves every file byte-exact", async () => {
    const layer = new TarLayerIndex(idx, countingSource(blob));
    for (const [path, content] of Object.entries(files)) {
      expect(layer.getAttr(path)?.size).toBe(content.length);
      expect((await layer.readFile(path, 0, content.length + 10)).equals(content)).toBe(true);
    }
    const big = files["usr/bin/big"] as Buffer;
    for (const [off, len] of [[0, 1], [SPAN - 3, 10], [5 * MiB + 7, 2 * MiB], [big.length - 5, 100]] as const) {
      expect((await layer.readFile("usr/bin/big", off, len)).equals(big.subarray(off, off + len))).toBe(true);
    }
    expect((await layer.readFile("usr/bin/big-again", 100, 50)).equals(big.subarray(100, 150))).toBe(true);
    expect((await layer.readFile("bin/ping", 0, 10)).toString()).toBe("ping");
  });

  it("fetches only the spans a read needs", async () => {
    const src = countingSource(blob);
    const layer = new TarLayerIndex(idx, src);
    await layer.readFile("opt/after-big.txt", 0, 100);
    if (kind === "zstd") {
      expect(src.requested).toBe(blob.length); // a single frame cannot be entered midway
    } else {
      expect(src.requested).toBeLessThan(blob.length / 8);
      const before = src.requested;
      await layer.readFile("usr/bin/big", 10 * MiB, 4096);
      expect(src.requested - before).toBeLessThanOrEqual(2 * SPAN + 64 * 1024);
    }
  });

  it("throws on corrupted bytes and never returns them", async () => {
    const bad = Buffer.from(blob);
    const at = Math.floor(blob.length / 2);
    bad[at] = (bad[at] as number) ^ 0xff;
    const layer = new TarLayerIndex(idx, countingSource(bad));
    const big = files["usr/bin/big"] as Buffer;
    // find a file range stored around the corrupted byte: the big file spans the middle
    const reads = [0, 4, 8, 12, 16, 20].map((m) => layer.readFile("usr/bin/big", m * MiB, 4 * MiB).then(
      (b) => ({ ok: b.equals(big.subarray(m * MiB, m * MiB + 4 * MiB)) }),
      (e: unknown) => ({ err: e }),
    ));
    const results = await Promise.all(reads);
    const errs = results.filter((r) => "err" in r);
    expect(errs.length).toBeGreaterThan(0);
    for (const r of results) {
      if ("err" in r) {
        expect(r.err).toBeInstanceOf(LayerVerificationError);
        expect(String(r.err)).toContain(idx.digest);
      } else expect(r.ok).toBe(true);
    }
    await expect(buildTarIndex(chunks(bad), { digest: idx.digest, mediaType: MEDIA[kind], spanSize: SPAN })).rejects.toThrow();
  });

  it("round-trips through serialisation, checked by digest", async () => {
    const { bytes, digest } = serializeTarIndex(idx);
    const again = parseTarIndex(bytes, digest);
    expect(serializeTarIndex(again).digest).toBe(digest);
    const layer = new TarLayerIndex(again, countingSource(blob));
    expect((await layer.readFile("usr/lib/medium.so", 1000, 5000)).equals((files["usr/lib/medium.so"] as Buffer).subarray(1000, 6000))).toBe(true);
    const tampered = Buffer.from(bytes);
    tampered[20] = (tampered[20] as number) ^ 1;
    expect(() => parseTarIndex(tampered, digest)).toThrow(LayerVerificationError);
  });
});

describe("index codec", () => {
  let blob: Buffer;
  let idx: TarIndex;
  beforeAll(async () => {
    blob = gzipSync(tarball);
    idx = await index(blob, "gzip");
  });

  it("decompresses a span's window only when the span is read, and a damaged window fails that span alone (v3, which has no checksum)", async () => {
    const bytes = serializeTarIndexV3(idx);
    const medium = files["usr/lib/medium.so"] as Buffer;
    const at = (idx.entries.find((e) => e.path === "usr/lib/medium.so")?.segments[0] as { at: number }).at;
    const layer0 = new TarLayerIndex(parseTarIndex(bytes), countingSource(blob));
    const span = layer0.reader.spanAt(at + 1000);
    const windowed = idx.spans.map((s, i) => ({ s, i })).filter(({ s }) => s.window);
    expect(windowed.some(({ i }) => i === span)).toBe(true);
    // the windows are the index's tail, in span order: damage the one of `span`
    const zLength = bytes.readUInt32BE(8);
    let offset = 12 + zLength;
    const sizes = windowed.map(({ s }) => zstdCompress(s.window as Buffer).length);
    for (const { i } of windowed) {
      if (i === span) break;
      offset += sizes[windowed.findIndex((w) => w.i === i)] as number;
    }
    const damaged = Buffer.from(bytes);
    damaged[offset + 4] = (damaged[offset + 4] as number) ^ 0xff;
    const parsed = parseTarIndex(damaged); // loads: windows are not looked at yet
    const layer = new TarLayerIndex(parsed, countingSource(blob));
    await expect(layer.readFile("usr/lib/medium.so", 1000, 100)).rejects.toThrow(LayerVerificationError);
    const other = (idx.entries.find((e) => e.path === "usr/bin/big")?.segments[0] as { at: number }).at;
    if (layer.reader.spanAt(other) !== span) {
      expect((await layer.readFile("usr/bin/big", 0, 100)).equals((files["usr/bin/big"] as Buffer).subarray(0, 100))).toBe(true);
    }
    expect((await layer0.readFile("usr/lib/medium.so", 1000, 100)).equals(medium.subarray(1000, 1100))).toBe(true);
  });

  it("a serialised index's shortened cell digests still catch a changed byte, and a broken cells section is refused", async () => {
    const { bytes } = serializeTarIndex(idx);
    const parsed = parseTarIndex(bytes);
    const medium = files["usr/lib/medium.so"] as Buffer;
    expect((await new TarLayerIndex(parsed, countingSource(blob)).readFile("usr/lib/medium.so", 1000, 5000)).equals(medium.subarray(1000, 6000))).toBe(true);
    const at = (idx.entries.find((e) => e.path === "usr/lib/medium.so")?.segments[0] as { at: number }).at;
    const cell = Math.floor(parsed.spans[new TarLayerIndex(parsed, countingSource(blob)).reader.spanAt(at + 1000)]!.in / CELL_SIZE);
    const bad = Buffer.from(blob);
    bad[cell * CELL_SIZE + 100] = (bad[cell * CELL_SIZE + 100] as number) ^ 0xff;
    await expect(new TarLayerIndex(parsed, countingSource(bad)).readFile("usr/lib/medium.so", 1000, 5000)).rejects.toThrow(/cell \d+ .*digest is/);
    // the cells section's length past the end (checksum made anew): an index that is not one, never a partly read one
    const zLength = bytes.readUInt32BE(40);
    const cut = Buffer.from(bytes);
    cut.writeUInt32BE(bytes.length, 44 + zLength);
    expect(() => parseTarIndex(reseal(cut))).toThrow(/not an augur index \(truncated\)/);
  });

  it("refuses a v4 index with any byte damaged (JSON, cells or a window): its checksum does not match", () => {
    const { bytes } = serializeTarIndex(idx);
    const zLength = bytes.readUInt32BE(40);
    const cLength = bytes.readUInt32BE(44 + zLength);
    for (const at of [44 + (zLength >> 1), 48 + zLength + (cLength >> 1), bytes.length - 10]) {
      const damaged = Buffer.from(bytes);
      damaged[at] = (damaged[at] as number) ^ 0x5a;
      expect(() => parseTarIndex(damaged), `byte ${at}`).toThrow(/not an augur index \(its bytes do not match its checksum/);
    }
    expect(parseTarIndex(reseal(Buffer.from(bytes))).entries.length).toBe(idx.entries.length);
  });

  it("still reads indexes written by earlier augurs (v3: cells as hex in the JSON)", async () => {
    const v3 = serializeTarIndexV3(idx);
    const parsed = parseTarIndex(v3);
    expect(parsed.cells).toEqual(idx.cells);
    const layer = new TarLayerIndex(parsed, countingSource(blob));
    expect((await layer.readFile("usr/lib/medium.so", 1000, 5000)).equals((files["usr/lib/medium.so"] as Buffer).subarray(1000, 6000))).toBe(true);
  });

  it("still reads indexes written by earlier augurs (v2: one zstd frame, raw windows)", async () => {
    const windows = idx.spans.map((s) => s.window).filter((w): w is Buffer => w !== undefined);
    const json = Buffer.from(JSON.stringify({
      ...idx,
      cells: undefined, // v2 indexes predate verification cells
      cellSize: undefined,
      spans: idx.spans.map((s) => ({ ...s, window: undefined, windowLength: s.window ? s.window.length : -1 })),
      entries: idx.entries.map((e) => ({ ...e, xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, v.toString("base64")])) })),
    }));
    const length = Buffer.alloc(4);
    length.writeUInt32BE(json.length);
    const v2 = zstdCompress(Buffer.concat([Buffer.from("AUGURIX2"), length, json, ...windows]));
    const layer = new TarLayerIndex(parseTarIndex(v2), countingSource(blob));
    expect((await layer.readFile("usr/lib/medium.so", 1000, 5000)).equals((files["usr/lib/medium.so"] as Buffer).subarray(1000, 6000))).toBe(true);
  });
});

describe("tar index entries", () => {
  let layer: TarLayerIndex;
  beforeAll(async () => {
    const blob = gzipSync(tarball);
    layer = new TarLayerIndex(await index(blob, "gzip"), countingSource(blob));
  });

  it("exposes every entry type and attribute", () => {
    expect(layer.getAttr("")?.type).toBe("dir");
    expect(layer.getAttr("usr/bin")).toMatchObject({ type: "dir", mode: 0o750, uid: 10, gid: 20 });
    expect(layer.getAttr("usr")).toMatchObject({ type: "dir", mode: 0o755 }); // implied parent
    expect(layer.getAttr("usr/bin/big")).toMatchObject({ type: "file", mode: 0o755, mtime: 1704067200, nlink: 2 });
    const link = layer.getAttr("usr/bin/big-again");
    expect(link).toMatchObject({ type: "hardlink", linkname: "usr/bin/big", size: 24 * MiB, nlink: 2 });
    expect(link?.ino).toBe(layer.getAttr("usr/bin/big")?.ino);
    expect(layer.getAttr("usr/bin/alias")).toMatchObject({ type: "symlink", linkname: "big" });
    expect(layer.getAttr("dev/null")).toMatchObject({ type: "char", devmajor: 1, devminor: 3, mode: 0o666 });
    expect(layer.getAttr("dev/sda")).toMatchObject({ type: "block", devmajor: 8, devminor: 0 });
    expect(layer.getAttr("run/fifo")?.type).toBe("fifo");
    const ping = layer.getAttr("bin/ping");
    expect(ping?.xattrs["security.capability"]?.toString()).toBe("cap");
    expect(ping?.xattrs["user.note"]?.toString()).toBe("héllo");
    expect(layer.getAttr(`deep/${"d".repeat(120)}/${"n".repeat(150)}.txt`)?.size).toBe(3);
  });

  it("keeps whiteouts and opaque markers as raw names", () => {
    expect(layer.lookup("var/cache", ".wh.old")?.type).toBe("file");
    expect(layer.lookup("var/lib", ".wh..wh..opq")?.type).toBe("file");
    expect(layer.readdir("var/lib").map((e) => e.path)).toEqual(["var/lib/.wh..wh..opq"]);
    expect(layer.readdir("usr/bin").map((e) => e.path.split("/").pop())).toEqual(["big", "big-again", "alias"]);
  });

  it("answers NotFound for missing paths", async () => {
    expect(layer.getAttr("nope")).toBeUndefined();
    expect(() => layer.readdir("nope")).toThrow();
    await expect(layer.readFile("nope", 0, 1)).rejects.toSatisfy(isNotFound);
  });

  it("chunkFor names the verified unit around an offset", () => {
    const c = layer.chunkFor("usr/bin/big", 10 * MiB);
    expect(c).toBeDefined();
    expect(c!.offset).toBeLessThanOrEqual(10 * MiB);
    expect(c!.offset + c!.length).toBeGreaterThan(10 * MiB);
    expect(c!.length).toBeLessThanOrEqual(SPAN + 64 * 1024);
  });
});

describe("zstd frames", () => {
  it("uses frame boundaries as access points in a multi-frame blob", async () => {
    const frames: Buffer[] = [];
    for (let i = 0; i < tarball.length; i += 2 * MiB) frames.push(zstdCompress(tarball.subarray(i, i + 2 * MiB)));
    const blob = Buffer.concat(frames);
    const idx = await index(blob, "zstd");
    expect(idx.spans.length).toBe(Math.ceil(tarball.length / (2 * MiB)));
    expect(idx.spans[1]?.start).toBe(frames[0]?.length);
    const src = countingSource(blob);
    const layer = new TarLayerIndex(idx, src);
    const big = files["usr/bin/big"] as Buffer;
    expect((await layer.readFile("usr/bin/big", 11 * MiB, 100_000)).equals(big.subarray(11 * MiB, 11 * MiB + 100_000))).toBe(true);
    expect(src.requested).toBeLessThanOrEqual(2 * Math.max(...frames.map((f) => f.length)));
  });

  it("reads a single-frame blob sequentially without starting over or fetching twice", async () => {
    const blob = zstdCompress(tarball);
    const idx = await index(blob, "zstd");
    const src = countingSource(blob);
    const layer = new TarLayerIndex(idx, src, { cacheBytes: 4 * MiB });
    const big = files["usr/bin/big"] as Buffer;
    const started = Date.now();
    for (let off = 0; off < big.length; off += 128 * 1024) {
      const got = await layer.readFile("usr/bin/big", off, 128 * 1024);
      if (!got.equals(big.subarray(off, off + 128 * 1024))) throw new Error(`mismatch at ${off}`);
    }
    expect(src.requested).toBe(blob.length);
    expect(Date.now() - started).toBeLessThan(5000);
  });
});

describe("speculative fetches over a compressible layer", () => {
  const text = Buffer.from(Array.from({ length: 60000 }, (_, i) => `line ${i} of a very compressible file\n`).join(""));
  let blob: Buffer;
  let idx: Awaited<ReturnType<typeof buildTarIndex>>;
  beforeAll(async () => {
    blob = gzipSync(await layerTar([{ type: "file", path: "doc.txt", content: text }]));
    idx = await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: MEDIA.gzip, spanSize: 64 * 1024 });
  });

  it("a read's own request holds only the cells it needs; the rest of the file comes beside it, and a bad cell fails alone", async () => {
    expect(idx.spans.length).toBeGreaterThan(5);
    expect(idx.cellSize).toBe(CELL_SIZE);
    const src = countingSource(blob);
    const speculative = new FetchScheduler();
    const layer = new TarLayerIndex(idx, src, { queue: speculative });
    expect((await layer.readFile("doc.txt", 0, 100)).equals(text.subarray(0, 100))).toBe(true);
    const first = src.calls[0] as { offset: number; length: number };
    // from the span's access point, only as far as the first 100 bytes of the file need: one cell
    expect(first.offset).toBe(0);
    expect(first.length).toBe(idx.cellSize);
    await speculative.idle();
    expect(src.calls.length).toBeGreaterThan(1);
    const calls = src.calls.length;
    expect((await layer.readFile("doc.txt", 0, text.length)).equals(text)).toBe(true);
    expect(src.calls.length).toBe(calls); // all fetched ahead

    // corrupt a cell further on: fetched speculatively, it spoils neither the read nor the other cells
    const cell = idx.cellSize as number;
    // two cells past where span 1 begins: beyond what a read at span 1's start decodes
    const k = idx.spans.findIndex((sp) => sp.start >= (idx.spans[1] as { start: number }).start + 2 * cell);
    const sk = idx.spans[k] as { start: number; out: number };
    const bad = Buffer.from(blob);
    bad[sk.start + 10] = (bad[sk.start + 10] as number) ^ 0xff;
    const q2 = new FetchScheduler();
    const fresh = new TarLayerIndex(idx, countingSource(bad), { queue: q2 });
    expect((await fresh.readFile("doc.txt", 0, 50)).equals(text.subarray(0, 50))).toBe(true);
    await q2.idle();
    const fileAt = (idx.entries.find((e) => e.path === "doc.txt")?.segments[0] as { at: number }).at;
    const s1 = (idx.spans[1] as { out: number }).out - fileAt;
    expect((await fresh.readFile("doc.txt", s1 + 10, 50)).equals(text.subarray(s1 + 10, s1 + 60))).toBe(true);
    await expect(fresh.readFile("doc.txt", sk.out - fileAt + 10, 50)).rejects.toThrow(LayerVerificationError);
  });

  it("without a speculative queue a read fetches only its own cells", async () => {
    const src = countingSource(blob);
    const layer = new TarLayerIndex(idx, src);
    await layer.readFile("doc.txt", 0, 100);
    await new Promise((r) => setTimeout(r, 20));
    expect(src.calls).toHaveLength(1);
    expect((src.calls[0] as { length: number }).length).toBe(idx.cellSize);
  });

  it("the first read of a small file fetches its directory's other small files, nearest first, and skips big ones", async () => {
    const small = (i: number): Buffer => Buffer.from(`module ${i}\n`.repeat(2000 + i));
    const big = noise(3 << 20, 5); // incompressible: beyond what read-ahead reaches
    const files = [
      ...Array.from({ length: 6 }, (_, i) => ({ type: "file" as const, path: `lib/m${i}.pyc`, content: small(i) })),
      { type: "file" as const, path: "lib/zbig.so", content: big },
      { type: "file" as const, path: "other/x.pyc", content: small(9) },
    ];
    const b = gzipSync(await layerTar(files));
    const index = await buildTarIndex(chunks(b), { digest: sha256(b), mediaType: MEDIA.gzip, spanSize: 16 * 1024 });
    const src = countingSource(b);
    const speculative = new FetchScheduler();
    const layer = new TarLayerIndex(index, src, { queue: speculative });
    await layer.readFile("lib/m2.pyc", 0, 10);
    await speculative.idle();
    const calls = src.calls.length;
    for (let i = 0; i < 6; i++) expect((await layer.readFile(`lib/m${i}.pyc`, 0, 1 << 20)).equals(small(i))).toBe(true);
    expect(src.calls.length).toBe(calls); // every sibling already here
    const bigAt = (index.entries.find((e) => e.path === "lib/zbig.so")?.segments[0] as { at: number }).at;
    const mid = layer.reader.spanAt(bigAt + (2 << 20));
    const midSpan = index.spans[mid] as { start: number; end: number };
    // read-ahead may touch the start of the big file, but not its middle
    expect(src.calls.some((c) => c.offset <= midSpan.start && c.offset + c.length >= midSpan.end)).toBe(false);
  });
});

describe("verification cells", () => {
  it("cut the blob into CELL_SIZE cells whose reach grows, kept through the codec; zstd layers have none", async () => {
    const blob = gzipSync(tarball);
    const idx = await index(blob, "gzip");
    const cells = idx.cells ?? [];
    expect(idx.cellSize).toBe(CELL_SIZE);
    expect(cells.length).toBe(Math.ceil(blob.length / CELL_SIZE));
    for (let i = 1; i < cells.length; i++) expect((cells[i] as { reach: number }).reach).toBeGreaterThanOrEqual((cells[i - 1] as { reach: number }).reach);
    expect(cells[cells.length - 1]?.reach).toBe(idx.uncompressedSize);
    // serialised, each keeps the first 128 bits of its digest
    expect(parseTarIndex(serializeTarIndex(idx).bytes).cells).toEqual(cells.map((c) => ({ ...c, digest: c.digest.slice(0, "sha256:".length + 32) })));
    const z = zstdCompress(tarball);
    expect((await index(z, "zstd")).cells).toBeUndefined();
  });

  it("a read fetches the cells from its span's access point only as far as it needs; uncompressed layers fetch just the cells of the bytes", async () => {
    const content = noise(4 * MiB, 7); // compresses to about half: a 4 MiB span of ~2 MiB compressed
    const t = await layerTar([{ type: "file", path: "f", content }]);
    const gz = gzipSync(t);
    const idx = await buildTarIndex(chunks(gz), { digest: sha256(gz), mediaType: MEDIA.gzip, spanSize: 8 * MiB });
    expect(idx.spans.length).toBe(1);
    const early = countingSource(gz);
    expect((await new TarLayerIndex(idx, early).readFile("f", 1000, 100)).equals(content.subarray(1000, 1100))).toBe(true);
    const late = countingSource(gz);
    expect((await new TarLayerIndex(idx, late).readFile("f", 3 * MiB, 100)).equals(content.subarray(3 * MiB, 3 * MiB + 100))).toBe(true);
    expect(early.requested).toBe(CELL_SIZE); // the first cell reaches byte 1100
    expect(late.requested).toBeGreaterThan(early.requested * 10);
    expect(late.requested).toBeLessThan(gz.length); // not to the span's end
    const plain = await buildTarIndex(chunks(t), { digest: sha256(t), mediaType: MEDIA.none, spanSize: 8 * MiB });
    const src = countingSource(t);
    expect((await new TarLayerIndex(plain, src).readFile("f", 3 * MiB, 100)).equals(content.subarray(3 * MiB, 3 * MiB + 100))).toBe(true);
    expect(src.requested).toBeLessThanOrEqual(2 * CELL_SIZE); // the cell(s) holding those 100 bytes
  });
});

describe("entry header offsets", () => {
  it("record where each entry's records begin (its PAX records included), kept through the codec", async () => {
    const long = `dir/${"n".repeat(150)}`; // a PAX path record before the header
    const t = await layerTar([{ type: "file", path: "a", content: "aaa" }, { type: "file", path: long, content: "bbb" }, { type: "dir", path: "d" }]);
    const gz = gzipSync(t);
    const idx = await buildTarIndex(chunks(gz), { digest: sha256(gz), mediaType: MEDIA.gzip });
    const byPath = new Map(idx.entries.map((e) => [e.path.replace(/^\.\//, ""), e]));
    const a = byPath.get("a");
    const b = byPath.get(long);
    expect(a?.header).toBe(0);
    expect(a?.segments[0]?.at).toBe(512);
    // b's records start right after a's data (one padded block), before its PAX header
    expect(b?.header).toBe(1024);
    expect((b?.segments[0]?.at ?? 0) - (b?.header ?? 0)).toBeGreaterThan(512);
    expect(t.subarray(b?.header ?? 0, (b?.header ?? 0) + 512).toString("latin1", 156, 157)).toBe("x");
    expect(parseTarIndex(serializeTarIndex(idx).bytes).entries.map((e) => e.header)).toEqual(idx.entries.map((e) => e.header));
  });
});
