// The serialised form of a TarIndex: versioned JSON (binary fields as
// base64), gzip-compressed, and content-addressed by the sha256 of those
// bytes. The index decides which bytes a reader trusts, so it is parsed only
// against the digest it was stored or published under.
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { LayerVerificationError } from "./layer-index.js";
import { TAR_INDEX_VERSION, type IndexSpan, type TarIndex } from "./tar-index.js";
import type { TarRecord } from "./tar-scanner.js";

/** Media type of a serialised index, e.g. when published as an OCI artifact. */
export const TAR_INDEX_MEDIA_TYPE = "application/vnd.augur.layer.index.v1+json+gzip";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const b64 = (b: Buffer): string => b.toString("base64");
const sha256 = (b: Buffer): string => `sha256:${createHash("sha256").update(b).digest("hex")}`;

/** Serialises `index`; `digest` names the bytes (the index's content address). */
export function serializeTarIndex(index: TarIndex): { bytes: Buffer; digest: string } {
  const json = {
    ...index,
    spans: index.spans.map((s) => ({ ...s, window: s.window ? b64(s.window) : undefined })),
    entries: index.entries.map((e) => ({
      ...e,
      xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, b64(v)])),
    })),
  };
  const bytes = gzipSync(Buffer.from(JSON.stringify(json)));
  return { bytes, digest: sha256(bytes) };
}

/** Parses serialised index bytes; with `expectedDigest`, refuses bytes that do not match it. */
export function parseTarIndex(bytes: Buffer, expectedDigest?: string): TarIndex {
  if (expectedDigest !== undefined && sha256(bytes) !== expectedDigest) {
    throw new LayerVerificationError(expectedDigest, `index bytes digest is ${sha256(bytes)}`);
  }
  let raw: Json;
  try {
    raw = JSON.parse(gunzipSync(bytes).toString("utf8")) as Json;
  } catch (err) {
    throw new InvalidArgumentError("layer index: not gzip-compressed JSON", { cause: err });
  }
  const o = obj(raw, "index");
  if (o.version !== TAR_INDEX_VERSION) throw new InvalidArgumentError(`layer index: unsupported version ${JSON.stringify(o.version ?? null)}`);
  const compression = str(o.compression, "compression");
  if (compression !== "gzip" && compression !== "zstd" && compression !== "none") {
    throw new InvalidArgumentError(`layer index: unknown compression ${compression}`);
  }
  return {
    version: TAR_INDEX_VERSION, digest: str(o.digest, "digest"), mediaType: str(o.mediaType, "mediaType"), compression,
    blobSize: int(o.blobSize, "blobSize"), diffId: str(o.diffId, "diffId"), uncompressedSize: int(o.uncompressedSize, "uncompressedSize"),
    spanSize: int(o.spanSize, "spanSize"), spans: arr(o.spans, "spans").map(span), entries: arr(o.entries, "entries").map(entry),
  };
}

function span(v: Json): IndexSpan {
  const s = obj(v, "span");
  return {
    in: int(s.in, "span.in"), bits: int(s.bits, "span.bits"), out: int(s.out, "span.out"),
    window: s.window === undefined ? undefined : Buffer.from(str(s.window, "span.window"), "base64"),
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
