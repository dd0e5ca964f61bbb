// Builds the seekable index of a plain OCI layer (tar, tar+gzip, tar+zstd)
// while streaming the blob once: tar entry offsets in the uncompressed stream,
// access points every `spanSize` uncompressed bytes (see decoders.ts), and a
// sha256 per compressed span between access points, so any later reader can
// fetch just the spans a file needs, by Range, and verify them. The whole
// blob is checked against the layer digest at the end of this first stream;
// an index is only returned for a blob that matched.
import { createHash, type Hash } from "node:crypto";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { asBuffer, compressionOf, indexingDecoder, type AccessPoint, type Compression } from "./decoders.js";
import { LayerVerificationError } from "../fetch/verification.js";
import { TarScanner, type TarRecord } from "./tar-scanner.js";

const log = logger("layer");

export const TAR_INDEX_VERSION = 1;
// 1 MiB: a miss on an indexed layer costs about a third of a MiB of compressed bytes
// (python3 start-up: 4 MiB spans fetched 36 MB, see docs/benchmarks.md), for an index of
// one 32 KiB gzip window per MiB of layer.
export const DEFAULT_SPAN_SIZE = 512 << 10;

/** Compressed bytes [start, end) decode, from access point (in, bits, out, window), to uncompressed [out, next span's out). */
export interface IndexSpan extends AccessPoint {
  start: number;
  end: number;
  /** sha256 of compressed bytes [start, end). */
  digest: string;
}

/**
 * Verification cells (gzip and uncompressed layers): the blob cut into
 * CELL_SIZE pieces, each with its own digest and how far the uncompressed
 * stream reaches once input up to the cell's end is decoded. A reader needs
 * the cells from a span's access point only up to the one that reaches the
 * bytes it wants, not the span's whole compressed range: python3's start-up
 * on the bench image wants 16.4 MB of 512 KiB spans (docs/benchmarks.md).
 * 8 KiB: with every range of a read or a prefetch in one multi-range request,
 * small cells cost no extra round trips. python3's start-up fetches 9.5 MB
 * with 8 KiB cells, 10.1 MB with 16 KiB and 12.9 MB with 64 KiB; with cells
 * stored as 128-bit binary digests (index v4) the 8 KiB cells of a published
 * index cost 0.19 MB more than 16 KiB's, and a node that never saw the image
 * fetches 12.7 MB instead of 13.4 MB (docs/benchmarks.md). Indexes record
 * their cell size, so those made with other sizes are read as they are.
 */
export const CELL_SIZE = 8 << 10;

export interface IndexCell {
  /**
   * sha256 of compressed bytes [i*cellSize, min((i+1)*cellSize, blobSize)):
   * whole in an index built here, its first 128 bits (32 hex digits) once
   * serialised (tar-index-codec.ts).
   */
  digest: string;
  /** Uncompressed bytes decodable (from any access point before it) once the input up to the cell's end is in. */
  reach: number;
}

/** Whether bytes whose sha256 is `got` are the cell whose (possibly shortened, at least 128-bit) digest is `want`. */
export function cellDigestMatches(got: string, want: string): boolean {
  return want.length >= "sha256:".length + 32 && got.startsWith(want);
}

export interface TarIndex {
  version: typeof TAR_INDEX_VERSION;
  /** Digest of the compressed layer blob this index describes. */
  digest: string;
  mediaType: string;
  compression: Compression;
  blobSize: number;
  /** sha256 of the uncompressed tar (the layer's diff ID). */
  diffId: string;
  uncompressedSize: number;
  spanSize: number;
  spans: IndexSpan[];
  /** Cells of CELL_SIZE (gzip and uncompressed layers; absent for zstd and in indexes made before them). */
  cellSize?: number;
  cells?: IndexCell[];
  entries: TarRecord[];
}

export interface BuildOptions {
  /** The layer digest the blob must match. */
  digest: string;
  mediaType: string;
  /** Uncompressed distance between access points; default DEFAULT_SPAN_SIZE. */
  spanSize?: number;
  /**
   * gzip: access points at exactly these uncompressed offsets (deflate block
   * boundaries from `gzipBlockBoundaries`) instead of every `spanSize`; see
   * access-points.ts.
   */
  accessAt?: readonly number[];
  /** Sees the uncompressed stream as it is decoded, so reads can be served during the first stream. */
  onData?: (offset: number, data: Buffer) => void;
}

/** Hashes compressed spans as the blob streams past, cutting at each access point after the first. */
class SpanHasher {
  readonly starts: number[] = [0];
  readonly digests: string[] = [];
  #hash: Hash = createHash("sha256");
  #pos = 0;
  #lastByte = 0;
  #first = true;

  consume(chunk: Buffer, points: readonly AccessPoint[]): void {
    let rel = 0;
    for (const p of points) {
      if (this.#first) {
        this.#first = false; // span 0 starts at byte 0 whatever its decode point
        continue;
      }
      const cut = p.in - this.#pos;
      this.#hash.update(chunk.subarray(rel, cut));
      rel = cut;
      this.digests.push(`sha256:${this.#hash.digest("hex")}`);
      this.#hash = createHash("sha256");
      if (p.bits) {
        // the byte holding the point's leftover bits belongs to both spans
        this.#hash.update(Buffer.of(cut > 0 ? (chunk[cut - 1] as number) : this.#lastByte));
      }
      this.starts.push(p.in - (p.bits ? 1 : 0));
    }
    this.#hash.update(chunk.subarray(rel));
    this.#pos += chunk.length;
    if (chunk.length > 0) this.#lastByte = chunk[chunk.length - 1] as number;
  }

  finish(): void {
    this.digests.push(`sha256:${this.#hash.digest("hex")}`);
  }
}

/** Streams `blob` once and returns its verified index. Throws LayerVerificationError on a digest mismatch. */
export async function buildTarIndex(blob: AsyncIterable<Uint8Array>, opts: BuildOptions): Promise<TarIndex> {
  const started = Date.now();
  const compression = compressionOf(opts.mediaType);
  const spanSize = opts.spanSize ?? DEFAULT_SPAN_SIZE;
  const decoder = indexingDecoder(compression, spanSize, opts.accessAt);
  const blobHash = createHash("sha256");
  const diffHash = createHash("sha256");
  const scanner = new TarScanner();
  const hasher = new SpanHasher();
  const points: AccessPoint[] = [];
  const entries: TarRecord[] = [];
  const cells: IndexCell[] = [];
  const withCells = compression !== "zstd";
  let cellHash = createHash("sha256");
  let blobSize = 0;
  let outSize = 0;

  const take = (chunk: Buffer | undefined, progress: { outputs: Buffer[]; points: AccessPoint[] }): void => {
    if (chunk) hasher.consume(chunk, progress.points);
    points.push(...progress.points);
    for (const out of progress.outputs) {
      if (compression !== "none") diffHash.update(out); // a plain tar's diff ID is its digest
      opts.onData?.(outSize, out);
      outSize += out.length;
      for (const rec of scanner.push(out)) entries.push(rec);
    }
  };
  for await (const piece of blob) {
    let chunk = asBuffer(piece);
    blobHash.update(chunk);
    while (chunk.length > 0) {
      // cut at cell boundaries, so each cell's reach is the output after exactly its input
      const room = withCells ? CELL_SIZE - (blobSize % CELL_SIZE) : chunk.length;
      const part = chunk.subarray(0, room);
      chunk = chunk.subarray(part.length);
      blobSize += part.length;
      take(part, decoder.write(part));
      if (!withCells) continue;
      cellHash.update(part);
      if (blobSize % CELL_SIZE === 0) {
        cells.push({ digest: `sha256:${cellHash.digest("hex")}`, reach: outSize });
        cellHash = createHash("sha256");
      }
    }
  }
  const tail = decoder.end();
  if (tail.points.length > 0) hasher.consume(Buffer.alloc(0), tail.points);
  take(undefined, { outputs: tail.outputs, points: tail.points });
  hasher.finish();
  if (withCells && blobSize % CELL_SIZE !== 0) cells.push({ digest: `sha256:${cellHash.digest("hex")}`, reach: outSize });

  const actual = `sha256:${blobHash.digest("hex")}`;
  if (actual !== opts.digest) throw new LayerVerificationError(opts.digest, `blob digest is ${actual}`);
  if (!scanner.atBoundary) throw new InvalidArgumentError(`layer ${opts.digest}: tar stream truncated`);

  const spans = points.map((p, i): IndexSpan => ({
    ...p,
    start: hasher.starts[i] as number,
    end: i + 1 < points.length ? (points[i + 1] as AccessPoint).in : blobSize,
    digest: hasher.digests[i] as string,
  }));
  const ms = Date.now() - started;
  log.debug("indexed layer", {
    digest: opts.digest, compression, entries: entries.length, spans: spans.length, blobSize, uncompressed: outSize, ms,
  });
  return {
    version: TAR_INDEX_VERSION, digest: opts.digest, mediaType: opts.mediaType, compression, blobSize,
    diffId: compression === "none" ? actual : `sha256:${diffHash.digest("hex")}`, uncompressedSize: outSize, spanSize, spans,
    ...(withCells ? { cellSize: CELL_SIZE, cells } : {}), entries,
  };
}
