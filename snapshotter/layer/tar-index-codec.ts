// The serialised form of a TarIndex, content-addressed by the sha256 of its bytes:
//
//   "AUGURIX4" | sha256 of all that follows (32 bytes)
//             | u32 BE length of Z | Z = zstd(JSON of everything but the cells and the windows)
//             | u32 BE length of C | C = zstd(the verification cells, binary; empty when none)
//             | each span's gzip window (32 KiB), zstd-compressed on its own, in span order
//
// Loading an index sits on the path of every container start, on the thread
// that answers FUSE and containerd. The windows are most of an index, and a
// start-up decodes from a few dozen of its hundreds of access points, so each
// window is decompressed the first time its span is decoded, not at load:
// a 387-span index loads in ~15 ms of zstd and JSON instead of ~60 ms (v2, one
// zstd frame over JSON and raw windows; still read) or ~280 ms (v1, gzip'd
// JSON with base64 windows). The index decides which bytes a reader trusts,
// so it is parsed only against the digest it was stored or published under.
//
// Cells (v4): a node that never saw an image fetches the published index
// before its first data request, and the python image's 10,000 cells (16 KiB each) as hex
// in JSON were 0.43 MB of its 1.7 MB. In C each cell is the first 16 bytes of
// its sha256 (128 bits: finding other bytes with the same prefix takes 2^128
// tries) and its reach as a LEB128 delta from the cell before; v3 indexes
// (hex cells in the JSON) are still read.
//
// The checksum (v4): a peer hands over an index with no digest anyone vouched
// for, and one flipped byte in a window decodes wrong bytes with every cell
// still matching; in binary cells it would fail good bytes. An index whose
// bytes do not match their checksum is not one: refused whole at parse, so
// the layer is read without it.
import { createHash } from "node:crypto";
import { compress, decompress } from "zstd-napi";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { LayerVerificationError } from "../fetch/verification.js";
import { TAR_INDEX_VERSION, type IndexCell, type IndexSpan, type TarIndex } from "./tar-index.js";
import type { TarRecord } from "./tar-scanner.js";
import { sha256Digest as sha256 } from "../util/digest.js";

/** Media type of a serialised index, e.g. when published as an OCI artifact. */
export const TAR_INDEX_MEDIA_TYPE = "application/vnd.augur.layer.index.v4";
/** Media type of the indexes earlier augurs published (AUGURIX3). */
export const TAR_INDEX_MEDIA_TYPE_V3 = "application/vnd.augur.layer.index.v3";
/** Media types of indexes this augur reads: its own, and v3. */
export const TAR_INDEX_MEDIA_TYPES: readonly string[] = [TAR_INDEX_MEDIA_TYPE, TAR_INDEX_MEDIA_TYPE_V3];
const MAGIC = Buffer.from("AUGURIX4");
const MAGIC_V3 = Buffer.from("AUGURIX3");
const MAGIC_V2 = Buffer.from("AUGURIX2");
/** The media type of serialised index bytes: v3 for those an earlier augur wrote (carried into a new artifact), else this augur's. */
export function tarIndexMediaTypeOf(bytes: Buffer): string {
  return bytes.subarray(0, MAGIC_V3.length).equals(MAGIC_V3) ? TAR_INDEX_MEDIA_TYPE_V3 : TAR_INDEX_MEDIA_TYPE;
}

/** The sha256 after a v4 index's magic. */
const CHECKSUM_BYTES = 32;
/** Bytes of each cell's sha256 kept (v4). */
export const CELL_DIGEST_BYTES = 16;

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const b64 = (b: Buffer): string => b.toString("base64");
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

/** Serialises `index`; `digest` names the bytes (the index's content address). */
export function serializeTarIndex(index: TarIndex): { bytes: Buffer; digest: string } {
  const windows = index.spans.map((s) => (s.window ? compress(s.window) : undefined));
  const json = {
    ...index,
    spans: index.spans.map((s, i) => ({ ...s, window: undefined, windowLength: windows[i]?.length ?? -1 })),
    cells: undefined,
    entries: index.entries.map((e) => ({
      ...e,
      xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, b64(v)])),
    })),
  };
  const z = compress(Buffer.from(JSON.stringify(json)));
  const c = index.cells ? compress(encodeCells(index.cells)) : Buffer.alloc(0);
  const body = Buffer.concat([u32(z.length), z, u32(c.length), c, ...windows.filter((w): w is Buffer => w !== undefined)]);
  const bytes = Buffer.concat([MAGIC, createHash("sha256").update(body).digest(), body]);
  return { bytes, digest: sha256(bytes) };
}

/** Parses serialised index bytes (v4, or v3 and v2 written by earlier augurs); with `expectedDigest`, refuses bytes that do not match it. */
export function parseTarIndex(bytes: Buffer, expectedDigest?: string): TarIndex {
  if (expectedDigest !== undefined && sha256(bytes) !== expectedDigest) {
    throw new LayerVerificationError(expectedDigest, `index bytes digest is ${sha256(bytes)}`);
  }
  let raw: Json;
  let windows: Buffer;
  let lazy: boolean;
  let binaryCells: IndexCell[] | undefined;
  try {
    const v4 = bytes.subarray(0, MAGIC.length).equals(MAGIC);
    if (v4 || bytes.subarray(0, MAGIC_V3.length).equals(MAGIC_V3)) {
      const head = MAGIC.length + (v4 ? CHECKSUM_BYTES : 0);
      if (bytes.length < head + 4) throw new Error("truncated");
      if (v4 && !createHash("sha256").update(bytes.subarray(head)).digest().equals(bytes.subarray(MAGIC.length, head))) {
        throw new Error("its bytes do not match its checksum (damaged)");
      }
      const length = bytes.readUInt32BE(head);
      let at = head + 4 + length;
      if (at > bytes.length) throw new Error("truncated");
      raw = JSON.parse(decompress(bytes.subarray(head + 4, at)).toString("utf8")) as Json;
      if (v4) {
        if (at + 4 > bytes.length) throw new Error("truncated");
        const cLength = bytes.readUInt32BE(at);
        if (at + 4 + cLength > bytes.length) throw new Error("truncated");
        if (cLength > 0) binaryCells = decodeCells(decompress(bytes.subarray(at + 4, at + 4 + cLength)));
        at += 4 + cLength;
      }
      windows = bytes.subarray(at);
      lazy = true;
    } else {
      const payload = decompress(bytes);
      if (!payload.subarray(0, MAGIC_V2.length).equals(MAGIC_V2)) throw new Error("no AUGURIX4, AUGURIX3 or AUGURIX2 header");
      const at = MAGIC_V2.length + 4 + payload.readUInt32BE(MAGIC_V2.length);
      raw = JSON.parse(payload.toString("utf8", MAGIC_V2.length + 4, at)) as Json;
      windows = payload.subarray(at);
      lazy = false;
    }
  } catch (err) {
    throw new InvalidArgumentError(`layer index: not an augur index (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  let at = 0;
  /** The next window's bytes: a slice of the index, no copy. */
  const next = (len: number): Buffer | undefined => {
    if (len < 0) return undefined;
    if (at + len > windows.length) bad("span.window");
    const w = windows.subarray(at, at + len);
    at += len;
    return w;
  };
  const o = obj(raw, "index");
  if (o.version !== TAR_INDEX_VERSION) throw new InvalidArgumentError(`layer index: unsupported version ${JSON.stringify(o.version ?? null)}`);
  const compression = str(o.compression, "compression");
  if (compression !== "gzip" && compression !== "zstd" && compression !== "none") {
    throw new InvalidArgumentError(`layer index: unknown compression ${compression}`);
  }
  const spans = arr(o.spans, "spans").map((v) => span(v, next, lazy));
  if (at !== windows.length) bad("windows (trailing bytes)");
  const blobSize = int(o.blobSize, "blobSize");
  const cells = binaryCells ?? (o.cells === undefined || o.cells === null ? undefined : arr(o.cells, "cells").map(cell));
  const cellSize = o.cellSize === undefined || o.cellSize === null ? undefined : int(o.cellSize, "cellSize");
  if ((cells === undefined) !== (cellSize === undefined)) bad("cells (cells and cellSize go together)");
  if (cells && cellSize && (cellSize === 0 || cells.length !== Math.ceil(blobSize / cellSize))) bad("cells (count does not cover the blob)");
  return {
    version: TAR_INDEX_VERSION, digest: str(o.digest, "digest"), mediaType: str(o.mediaType, "mediaType"), compression,
    blobSize: int(o.blobSize, "blobSize"), diffId: str(o.diffId, "diffId"), uncompressedSize: int(o.uncompressedSize, "uncompressedSize"),
    spanSize: int(o.spanSize, "spanSize"), spans, ...(cells && cellSize ? { cellSize, cells } : {}), entries: arr(o.entries, "entries").map(entry),
  };
}

function span(v: Json, next: (len: number) => Buffer | undefined, lazy: boolean): IndexSpan {
  const s = obj(v, "span");
  const len = s.windowLength;
  if (typeof len !== "number" || !Number.isSafeInteger(len) || len < -1) bad("span.windowLength");
  const stored = next(len);
  const out: IndexSpan = {
    in: int(s.in, "span.in"), bits: int(s.bits, "span.bits"), out: int(s.out, "span.out"),
    window: lazy ? undefined : stored,
    start: int(s.start, "span.start"), end: int(s.end, "span.end"), digest: str(s.digest, "span.digest"),
  };
  if (lazy && stored) {
    let window: Buffer | undefined;
    Object.defineProperty(out, "window", {
      enumerable: true,
      get: (): Buffer => {
        try {
          window ??= decompress(stored);
        } catch (err) {
          throw new InvalidArgumentError(`layer index: span at ${out.start} has a bad window (${String(err)})`, { cause: err });
        }
        return window;
      },
    });
  }
  return out;
}

/** count (u32 BE) | each cell's first CELL_DIGEST_BYTES of sha256 | each reach as an unsigned LEB128 delta from the one before. */
function encodeCells(cells: readonly IndexCell[]): Buffer {
  const digests = Buffer.alloc(cells.length * CELL_DIGEST_BYTES);
  const reaches: number[] = [];
  let last = 0;
  cells.forEach((c, i) => {
    const hex = c.digest.slice("sha256:".length, "sha256:".length + 2 * CELL_DIGEST_BYTES);
    if (!/^[0-9a-f]{32}$/.test(hex)) throw new InvalidArgumentError(`layer index: cell ${i} has no sha256 digest`);
    digests.write(hex, i * CELL_DIGEST_BYTES, "hex");
    if (c.reach < last) throw new InvalidArgumentError(`layer index: cell ${i} reaches less far than the one before`);
    for (let d = c.reach - last; ; d = Math.floor(d / 128)) {
      if (d < 128) {
        reaches.push(d);
        break;
      }
      reaches.push((d % 128) | 128);
    }
    last = c.reach;
  });
  return Buffer.concat([u32(cells.length), digests, Buffer.from(reaches)]);
}

function decodeCells(b: Buffer): IndexCell[] {
  if (b.length < 4) bad("cells");
  const count = b.readUInt32BE(0);
  let at = 4 + count * CELL_DIGEST_BYTES;
  if (at > b.length) bad("cells (truncated)");
  const cells: IndexCell[] = [];
  let reach = 0;
  for (let i = 0; i < count; i++) {
    let delta = 0;
    for (let scale = 1; ; scale *= 128) {
      if (at >= b.length || scale > 2 ** 49) bad("cells (reach)");
      const byte = b[at++] as number;
      delta += (byte & 127) * scale;
      if (byte < 128) break;
    }
    reach += delta;
    if (!Number.isSafeInteger(reach)) bad("cells (reach)");
    const d = 4 + i * CELL_DIGEST_BYTES;
    cells.push({ digest: `sha256:${b.toString("hex", d, d + CELL_DIGEST_BYTES)}`, reach });
  }
  if (at !== b.length) bad("cells (trailing bytes)");
  return cells;
}

function cell(v: Json): { digest: string; reach: number } {
  const c = arr(v, "cell");
  const hex = str(c[0], "cell.digest");
  if (!/^[0-9a-f]{64}$/.test(hex)) bad("cell.digest");
  return { digest: `sha256:${hex}`, reach: int(c[1], "cell.reach") };
}

function entry(v: Json): TarRecord {
  const e = obj(v, "entry");
  const type = str(e.type, "entry.type");
  if (!["file", "dir", "symlink", "hardlink", "char", "block", "fifo"].includes(type)) {
    throw new InvalidArgumentError(`layer index: bad entry type ${type}`);
  }
  return {
    path: str(e.path, "path"), type: type as TarRecord["type"], mode: int(e.mode, "mode"), uid: int(e.uid, "uid"),
    gid: int(e.gid, "gid"), uname: str(e.uname, "uname"), gname: str(e.gname, "gname"), size: int(e.size, "size"),
    mtime: num(e.mtime, "mtime"), linkname: str(e.linkname, "linkname"), devmajor: int(e.devmajor, "devmajor"),
    devminor: int(e.devminor, "devminor"),
    xattrs: Object.fromEntries(Object.entries(obj(e.xattrs, "xattrs")).map(([k, x]) => [k, Buffer.from(str(x, "xattr"), "base64")])),
    segments: arr(e.segments, "segments").map((g) => {
      const s = obj(g, "segment");
      return { offset: int(s.offset, "segment.offset"), at: int(s.at, "segment.at"), length: int(s.length, "segment.length") };
    }),
    ...(e.header === undefined || e.header === null ? {} : { header: int(e.header, "header") }),
  };
}

function bad(what: string): never {
  throw new InvalidArgumentError(`layer index: bad ${what}`);
}
function obj(v: Json | undefined, what: string): { [k: string]: Json } {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v : bad(what);
}
function arr(v: Json | undefined, what: string): Json[] {
  return Array.isArray(v) ? v : bad(what);
}
function str(v: Json | undefined, what: string): string {
  return typeof v === "string" ? v : bad(what);
}
function num(v: Json | undefined, what: string): number {
  return typeof v === "number" && Number.isFinite(v) ? v : bad(what);
}
function int(v: Json | undefined, what: string): number {
  return Number.isSafeInteger(v) && (v as number) >= 0 ? (v as number) : bad(what);
}
