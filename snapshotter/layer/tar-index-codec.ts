// The serialised form of a TarIndex, zstd-compressed and content-addressed by
// the sha256 of those bytes:
//
//   "AUGURIX2" | u32 BE length of the JSON | JSON (spans without windows) | the windows, raw, in span order
//
// The gzip windows (32 KiB per access point) are most of an index; kept out
// of the JSON they need no base64 and parse as slices of one buffer. Loading a
// 387-span index took ~280 ms as gzip'd JSON with base64 windows, which sat on
// the path of every container start (docs/benchmarks.md). The index decides
// which bytes a reader trusts, so it is parsed only against the digest it was
// stored or published under.
import { compress, decompress } from "zstd-napi";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { LayerVerificationError } from "./layer-index.js";
import { TAR_INDEX_VERSION, type IndexSpan, type TarIndex } from "./tar-index.js";
import type { TarRecord } from "./tar-scanner.js";
import { sha256Digest as sha256 } from "../util/digest.js";

/** Media type of a serialised index, e.g. when published as an OCI artifact. */
export const TAR_INDEX_MEDIA_TYPE = "application/vnd.augur.layer.index.v2+zstd";
const MAGIC = Buffer.from("AUGURIX2");

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const b64 = (b: Buffer): string => b.toString("base64");

/** Serialises `index`; `digest` names the bytes (the index's content address). */
export function serializeTarIndex(index: TarIndex): { bytes: Buffer; digest: string } {
  const windows = index.spans.map((s) => s.window).filter((w): w is Buffer => w !== undefined);
  const json = {
    ...index,
    spans: index.spans.map((s) => ({ ...s, window: undefined, windowLength: s.window ? s.window.length : -1 })),
    entries: index.entries.map((e) => ({
      ...e,
      xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, b64(v)])),
    })),
  };
  const text = Buffer.from(JSON.stringify(json));
  const length = Buffer.alloc(4);
  length.writeUInt32BE(text.length);
  const bytes = compress(Buffer.concat([MAGIC, length, text, ...windows]));
  return { bytes, digest: sha256(bytes) };
}

/** Parses serialised index bytes; with `expectedDigest`, refuses bytes that do not match it. */
export function parseTarIndex(bytes: Buffer, expectedDigest?: string): TarIndex {
  if (expectedDigest !== undefined && sha256(bytes) !== expectedDigest) {
    throw new LayerVerificationError(expectedDigest, `index bytes digest is ${sha256(bytes)}`);
  }
  let raw: Json;
  let payload: Buffer;
  let at: number;
  try {
    payload = decompress(bytes);
    if (!payload.subarray(0, MAGIC.length).equals(MAGIC)) throw new Error("no AUGURIX2 header");
    const length = payload.readUInt32BE(MAGIC.length);
    at = MAGIC.length + 4 + length;
    raw = JSON.parse(payload.toString("utf8", MAGIC.length + 4, at)) as Json;
  } catch (err) {
    throw new InvalidArgumentError(`layer index: not an augur index (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  /** The next window: a slice of the payload, no copy. */
  const window = (len: number): Buffer | undefined => {
    if (len < 0) return undefined;
    if (at + len > payload.length) bad("span.window");
    const w = payload.subarray(at, at + len);
    at += len;
    return w;
  };
  const o = obj(raw, "index");
  if (o.version !== TAR_INDEX_VERSION) throw new InvalidArgumentError(`layer index: unsupported version ${JSON.stringify(o.version ?? null)}`);
  const compression = str(o.compression, "compression");
  if (compression !== "gzip" && compression !== "zstd" && compression !== "none") {
    throw new InvalidArgumentError(`layer index: unknown compression ${compression}`);
  }
  return {
    version: TAR_INDEX_VERSION, digest: str(o.digest, "digest"), mediaType: str(o.mediaType, "mediaType"), compression,
    blobSize: int(o.blobSize, "blobSize"), diffId: str(o.diffId, "diffId"), uncompressedSize: int(o.uncompressedSize, "uncompressedSize"),
    spanSize: int(o.spanSize, "spanSize"), spans: arr(o.spans, "spans").map((v) => span(v, window)), entries: arr(o.entries, "entries").map(entry),
  };
}

function span(v: Json, window: (len: number) => Buffer | undefined): IndexSpan {
  const s = obj(v, "span");
  const len = s.windowLength;
  if (typeof len !== "number" || !Number.isSafeInteger(len) || len < -1) bad("span.windowLength");
  return {
    in: int(s.in, "span.in"), bits: int(s.bits, "span.bits"), out: int(s.out, "span.out"),
    window: window(len),
    start: int(s.start, "span.start"), end: int(s.end, "span.end"), digest: str(s.digest, "span.digest"),
  };
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
