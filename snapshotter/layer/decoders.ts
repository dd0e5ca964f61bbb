// Decompression for the seekable tar index, per layer compression: a one-pass
// decoder that also reports access points (where a later reader may start
// decoding having fetched only the bytes from there on), and the decoder that
// starts at such a point.
//   gzip: zran-style points at deflate block boundaries (bit offset + 32 KiB window)
//   zstd: frame boundaries; a blob written as one frame (the usual case for
//         `tar | zstd`) has a single point, so a read decodes from the start
//   none: any byte offset
import { createRequire } from "node:module";
import type { DCtx as DCtxType } from "zstd-napi/binding.js";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { zran } from "./zran/zran.js";

export type Compression = "none" | "gzip" | "zstd";

/** Where decoding can resume: compressed byte `in` (the partial byte before it holds `bits` bits), uncompressed `out`. */
export interface AccessPoint {
  in: number;
  bits: number;
  out: number;
  /** gzip only: the 32 KiB of output before `out`. */
  window?: Buffer;
}

export interface DecodeProgress {
  outputs: Buffer[];
  points: AccessPoint[];
}

/** Decodes a whole blob once, in order, reporting access points at least `span` uncompressed bytes apart. */
export interface IndexingDecoder {
  write(chunk: Buffer): DecodeProgress;
  /** Flushes; throws if the compressed stream is truncated. */
  end(): DecodeProgress;
}

const require = createRequire(import.meta.url);
const { DCtx } = require("zstd-napi/binding") as { DCtx: typeof DCtxType };
const ZSTD_OUT = 1 << 20;

/** The compression of an OCI or Docker layer media type. */
export function compressionOf(mediaType: string): Compression {
  if (/[+.]gzip$/.test(mediaType)) return "gzip";
  if (/[+.]zstd$/.test(mediaType)) return "zstd";
  if (/\.tar$|\.layer\.v1\.tar$/.test(mediaType) || mediaType.endsWith("rootfs.diff.tar")) return "none";
  throw new InvalidArgumentError(`unsupported layer media type ${mediaType}`);
}

/**
 * `at` (gzip only): put access points at exactly these uncompressed offsets,
 * each a deflate block boundary found by `gzipBlockBoundaries`, instead of
 * every `span` bytes.
 */
export function indexingDecoder(compression: Compression, span: number, at?: readonly number[]): IndexingDecoder {
  switch (compression) {
    case "gzip":
      return gzipIndexer(span, at);
    case "zstd":
      return new ZstdIndexer(span);
    case "none":
      return plainIndexer(span);
  }
}

function gzipIndexer(span: number, at?: readonly number[]): IndexingDecoder {
  const z = zran();
  const h = z.createInflater(span, at && Float64Array.from(at));
  return {
    write: (chunk) => z.inflaterWrite(h, chunk),
    end: () => {
      const st = z.inflaterState(h);
      if (!st.ended) throw new InvalidArgumentError(`gzip stream truncated after ${st.totalIn} bytes`);
      return { outputs: [], points: [] };
    },
  };
}

/** A stream's chunk as a Buffer, without copying. */
export function asBuffer(piece: Uint8Array): Buffer {
  return Buffer.isBuffer(piece) ? piece : Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
}

/**
 * Every uncompressed offset of a gzip blob where decoding could resume (the
 * ends of deflate blocks): where `indexingDecoder`'s `at` may place points.
 */
export async function gzipBlockBoundaries(blob: AsyncIterable<Uint8Array>): Promise<number[]> {
  const z = zran();
  const h = z.createInflater(1, undefined, true);
  const outs: number[] = [];
  for await (const piece of blob) for (const p of z.inflaterWrite(h, asBuffer(piece)).points) outs.push(p.out);
  if (!z.inflaterState(h).ended) throw new InvalidArgumentError("gzip stream truncated");
  return outs;
}

function plainIndexer(span: number): IndexingDecoder {
  let pos = 0;
  let next = 0;
  return {
    write: (chunk) => {
      const points: AccessPoint[] = [];
      while (next < pos + chunk.length) {
        points.push({ in: next, bits: 0, out: next });
        next += span;
      }
      pos += chunk.length;
      return { outputs: [chunk], points };
    },
    end: () => ({ outputs: [], points: pos === 0 ? [{ in: 0, bits: 0, out: 0 }] : [] }),
  };
}

class ZstdIndexer implements IndexingDecoder {
  readonly #dctx = new DCtx();
  #in = 0;
  #out = 0;
  #last = 0;
  #frameDone = true; // between frames (nothing started yet counts)
  #points: AccessPoint[] = [{ in: 0, bits: 0, out: 0 }];

  constructor(readonly span: number) {}

  write(chunk: Buffer): DecodeProgress {
    const outputs: Buffer[] = [];
    const points = this.#points;
    this.#points = [];
    let src = chunk;
    for (;;) {
      if (this.#frameDone && src.length > 0 && this.#out - this.#last >= this.span) {
        // a frame starts here: a reader can begin decoding at this byte
        points.push({ in: this.#in, bits: 0, out: this.#out });
        this.#last = this.#out;
      }
      const dst = Buffer.allocUnsafe(ZSTD_OUT);
      const [ret, produced, consumed] = this.#dctx.decompressStream(dst, src);
      src = src.subarray(consumed);
      this.#in += consumed;
      this.#out += produced;
      if (produced > 0) outputs.push(produced === dst.length ? dst : Buffer.from(dst.subarray(0, produced)));
      this.#frameDone = ret === 0;
      if (consumed === 0 && produced === 0 && src.length > 0) throw new InvalidArgumentError("zstd stream: decoder made no progress");
      if (src.length === 0 && produced < dst.length) break;
    }
    return { outputs, points };
  }

  end(): DecodeProgress {
    if (!this.#frameDone) throw new InvalidArgumentError(`zstd stream truncated after ${this.#in} bytes`);
    const points = this.#points;
    this.#points = [];
    return { outputs: [], points };
  }
}

/**
 * `length` bytes found `skip` bytes after access point `p`, decoded from
 * `input`, the compressed bytes from the point on (from `p.in - 1` when
 * `p.bits` is set). Returns fewer bytes only if the input ends first.
 */
export function decodeFrom(compression: Compression, input: Buffer, p: AccessPoint, skip: number, length: number): Buffer {
  switch (compression) {
    case "none":
      return input.subarray(skip, skip + length);
    case "gzip":
      return zran().extract(input, p.bits, p.window ?? Buffer.alloc(0), skip, length);
    case "zstd":
      return zstdRange(input, skip, length);
  }
}

function zstdRange(input: Buffer, skip: number, length: number): Buffer {
  const cursor = new ZstdCursor(input);
  cursor.skip(skip);
  return cursor.next(length);
}

/**
 * Sequential zstd decoding that can be continued later: a span made of one
 * big frame cannot be entered midway, so readers keep a cursor and go on
 * from where the previous read stopped instead of starting over.
 */
export class ZstdCursor {
  readonly #dctx = new DCtx();
  #src: Buffer;
  #scratch: Buffer | undefined;
  /** Uncompressed bytes produced so far, relative to the start of the input. */
  position = 0;

  constructor(input: Buffer) {
    this.#src = input;
  }

  skip(n: number): void {
    while (n > 0) {
      this.#scratch ??= Buffer.allocUnsafe(ZSTD_OUT);
      const got = this.#fill(this.#scratch.subarray(0, Math.min(n, ZSTD_OUT)));
      if (got === 0) return;
      n -= got;
    }
  }

  /** The next `length` bytes, fewer only at the end of the input. */
  next(length: number): Buffer {
    const out = Buffer.allocUnsafe(length);
    let have = 0;
    while (have < length) {
      const got = this.#fill(out.subarray(have));
      if (got === 0) break;
      have += got;
    }
    return have === length ? out : out.subarray(0, have);
  }

  #fill(dst: Buffer): number {
    let produced = 0;
    while (produced === 0) {
      const [, made, consumed] = this.#dctx.decompressStream(dst, this.#src);
      this.#src = this.#src.subarray(consumed);
      produced += made;
      if (made === 0 && consumed === 0) break;
    }
    this.position += produced;
    return produced;
  }
}
