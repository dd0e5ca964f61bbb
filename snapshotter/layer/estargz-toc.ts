// eStargz footer and TOC: locating the table of contents at the end of the
// blob with two Range reads (footer, then the TOC's gzip member), checking its
// digest against the layer's `containerd.io/snapshot/stargz/toc.digest`
// annotation, and the TOC JSON types. Format as in stargz-snapshotter's
// estargz package (types.go, gzip.go).
import { promisify } from "node:util";
import { gunzip } from "node:zlib";
import { InvalidArgumentError, UnavailableError } from "../errdefs/errors.js";
import { type BlobSource } from "../fetch/blob-source.js";
import { LayerVerificationError } from "../fetch/verification.js";
import { TarScanner } from "./tar-scanner.js";
import { sha256Digest } from "../util/digest.js";

/** Layer annotation holding the digest of the TOC JSON. */
export const TOC_DIGEST_ANNOTATION = "containerd.io/snapshot/stargz/toc.digest";
export const TOC_TAR_NAME = "stargz.index.json";
/** gzip header (10) + XLEN (2) + subfield id and length (4) + "%016xSTARGZ" (22) + empty stored block (5) + trailer (8). */
export const FOOTER_SIZE = 51;
/** The original stargz footer: the extra field is "%016xSTARGZ" without a subfield header. */
export const LEGACY_FOOTER_SIZE = 47;
/**
 * A TOC's gzip member is fetched only when it is at most this long, and it
 * may decompress to at most this many bytes: the footer and the TOC come
 * from the registry, and a footer pointing at the start of a small gzip
 * bomb would otherwise be fetched and inflated whole. 50 MiB is the limit
 * containers/storage puts on zstd:chunked TOCs; a layer of 100,000 files has
 * a TOC of about 25 MB.
 */
export const MAX_TOC_BYTES = 50 << 20;
const gunzipAsync = promisify(gunzip);

/** One TOC entry as serialised (estargz TOCEntry). */
export interface TocEntry {
  name: string;
  type: "dir" | "reg" | "symlink" | "hardlink" | "char" | "block" | "fifo" | "chunk";
  size?: number;
  modtime?: string;
  linkName?: string;
  mode?: number;
  uid?: number;
  gid?: number;
  userName?: string;
  groupName?: string;
  offset?: number;
  devMajor?: number;
  devMinor?: number;
  /** Values are base64 (Go []byte). */
  xattrs?: Record<string, string>;
  digest?: string;
  chunkOffset?: number;
  chunkSize?: number;
  chunkDigest?: string;
  /** Offset of the chunk inside its gzip member's output (newer writers pack small chunks together). */
  innerOffset?: number;
}

export interface Toc {
  version: number;
  entries: TocEntry[];
}

export interface Footer {
  tocOffset: number;
  footerSize: number;
}

/** Parses the last bytes of a blob (at least 51, or 47 for a legacy stargz blob). */
export function parseFooter(tail: Buffer): Footer {
  const gzipExtra = (b: Buffer): Buffer | undefined => {
    if (b[0] !== 0x1f || b[1] !== 0x8b || b[2] !== 8 || !((b[3] as number) & 4)) return undefined;
    const xlen = b.readUInt16LE(10);
    return b.subarray(12, 12 + xlen);
  };
  const offsetOf = (s: Buffer): number | undefined => {
    const text = s.toString("latin1");
    if (s.length !== 22 || !text.endsWith("STARGZ") || !/^[0-9a-f]{16}/.test(text)) return undefined;
    return parseInt(text.slice(0, 16), 16);
  };
  if (tail.length >= FOOTER_SIZE) {
    const extra = gzipExtra(tail.subarray(tail.length - FOOTER_SIZE));
    if (extra && extra.length === 26 && extra[0] === 0x53 && extra[1] === 0x47 && extra.readUInt16LE(2) === 22) {
      const tocOffset = offsetOf(extra.subarray(4));
      if (tocOffset !== undefined) return { tocOffset, footerSize: FOOTER_SIZE };
    }
  }
  if (tail.length >= LEGACY_FOOTER_SIZE) {
    const extra = gzipExtra(tail.subarray(tail.length - LEGACY_FOOTER_SIZE));
    const tocOffset = extra ? offsetOf(extra) : undefined;
    if (tocOffset !== undefined) return { tocOffset, footerSize: LEGACY_FOOTER_SIZE };
  }
  throw new InvalidArgumentError("not an eStargz blob: no stargz footer");
}

export interface LoadedToc {
  toc: Toc;
  /** sha256 of the TOC JSON bytes, as the toc.digest annotation names it. */
  tocDigest: string;
  footer: Footer;
}

async function fetch(blob: BlobSource, digest: string, offset: number, length: number): Promise<Buffer> {
  try {
    const b = await blob.read(offset, length);
    if (b.length < length) throw new Error(`short read: ${b.length} of ${length}`);
    return b;
  } catch (err) {
    throw new UnavailableError(`layer ${digest}: fetching bytes ${offset}-${offset + length}`, { cause: err });
  }
}

/**
 * Reads the footer and the TOC of an eStargz blob. With `tocDigest` (the
 * annotation), a TOC whose JSON does not match is refused.
 */
export async function loadToc(blob: BlobSource, digest: string, tocDigest?: string): Promise<LoadedToc> {
  const reads: [number, number][] = [];
  const tracked: BlobSource = {
    size: blob.size,
    read: (offset, length) => (reads.push([offset, length]), blob.read(offset, length)),
    verified: (offset, data) => blob.verified?.(offset, data),
  };
  try {
    return await loadTocFrom(tracked, digest, tocDigest);
  } catch (err) {
    if (!(err instanceof LayerVerificationError || err instanceof InvalidArgumentError)) throw err;
    // bytes from a spoiled cache file or a peer: once more, from the registry
    let retry = false;
    for (const [o, l] of reads) if (blob.rejected && (await blob.rejected(o, l))) retry = true;
    if (!retry) throw err;
    return loadTocFrom(blob, digest, tocDigest);
  }
}

async function loadTocFrom(blob: BlobSource, digest: string, tocDigest?: string): Promise<LoadedToc> {
  const tailLen = Math.min(FOOTER_SIZE, blob.size);
  const tail = await fetch(blob, digest, blob.size - tailLen, tailLen);
  const footer = parseFooter(tail);
  const tocEnd = blob.size - footer.footerSize;
  if (footer.tocOffset >= tocEnd) throw new InvalidArgumentError(`layer ${digest}: TOC offset ${footer.tocOffset} out of range`);
  const member = tocEnd - footer.tocOffset;
  if (member > MAX_TOC_BYTES) throw new LayerVerificationError(digest, `TOC gzip member is ${member} bytes, more than the ${MAX_TOC_BYTES} allowed`);
  const compressed = await fetch(blob, digest, footer.tocOffset, member);
  let tarBytes: Buffer;
  try {
    // on libuv's thread pool, not the event loop, and stopped at the cap
    tarBytes = await gunzipAsync(compressed, { maxOutputLength: MAX_TOC_BYTES });
  } catch (err) {
    if (err instanceof RangeError || (err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
      throw new LayerVerificationError(digest, `TOC decompresses to more than the ${MAX_TOC_BYTES} bytes allowed`);
    }
    throw new LayerVerificationError(digest, `TOC gzip member does not decompress: ${String(err)}`);
  }
  const rec = new TarScanner().push(tarBytes).find((r) => r.type === "file");
  const seg = rec?.segments[0];
  if (!rec || rec.path.replace(/^\.?\//, "") !== TOC_TAR_NAME) {
    throw new LayerVerificationError(digest, `TOC tar does not start with ${TOC_TAR_NAME}`);
  }
  const json = seg ? tarBytes.subarray(seg.at, seg.at + seg.length) : Buffer.alloc(0);
  const actual = sha256Digest(json);
  if (tocDigest !== undefined && actual !== tocDigest) {
    throw new LayerVerificationError(digest, `TOC digest is ${actual}, annotation says ${tocDigest}`);
  }
  let toc: Toc;
  try {
    toc = JSON.parse(json.toString("utf8")) as Toc;
  } catch (err) {
    throw new LayerVerificationError(digest, `TOC is not JSON: ${String(err)}`);
  }
  if (!toc || !Array.isArray(toc.entries)) throw new LayerVerificationError(digest, "TOC has no entries");
  if (tocDigest !== undefined) {
    // the TOC matched the layer's annotation, and the footer led to it: worth keeping
    // (the next mount, and peers this node serves, read them from the cache)
    blob.verified?.(footer.tocOffset, compressed);
    blob.verified?.(blob.size - tailLen, tail);
  }
  return { toc, tocDigest: actual, footer };
}
