// Reads uncompressed ranges of a plain layer through its TarIndex: fetches
// only the compressed spans that cover the range (adjacent missing spans in
// one Range read), checks each against its digest before decoding it from its
// access point, and caches decoded pieces of `spanSize` bytes so sequential
// reads decode each byte once. Concurrent reads of one span share its fetch.
// A zstd span can be far longer than spanSize (a single-frame blob is one
// span): it is decoded only as far as reads reach, and a cursor remembers
// where, so reading on continues instead of starting over from the frame.
import { LRUCache } from "lru-cache";
import { UnavailableError } from "../errdefs/errors.js";
import { decodeFrom, ZstdCursor } from "./decoders.js";
import { LayerVerificationError, verifiedItem, type BlobSource } from "./layer-index.js";
import type { IndexSpan, TarIndex } from "./tar-index.js";
import { sha256Digest } from "../util/digest.js";

export interface SpanReaderOptions {
  /** Bytes of decoded data kept in memory; default 16 MiB (the kernel's page cache keeps what FUSE served). */
  cacheBytes?: number;
  /**
   * A miss also fetches the spans that follow it, up to this many compressed
   * bytes, in the same request; they are verified like any other and kept by
   * the blob source's cache. Default 0: with 512 KiB spans, python3 start-up
   * fetched 30 MB instead of 17 MB for no gain in time (docs/benchmarks.md).
   */
  readAheadBytes?: number;
}

const MAX_CURSORS = 2;

export class SpanReader {
  readonly #index: TarIndex;
  readonly #blob: BlobSource;
  readonly #piece: number;
  readonly #readAheadBytes: number;
  readonly #decoded: LRUCache<string, Buffer>;
  readonly #fetching = new Map<number, Promise<Buffer>>();
  readonly #cursors = new Map<number, { cursor: ZstdCursor; piece: number }>();
  /** Compressed bytes requested from the blob so far. */
  fetchedBytes = 0;

  constructor(index: TarIndex, blob: BlobSource, opts: SpanReaderOptions = {}) {
    this.#index = index;
    this.#blob = blob;
    this.#piece = index.spanSize;
    this.#readAheadBytes = opts.readAheadBytes ?? 0;
    this.#decoded = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, opts.cacheBytes ?? 16 << 20),
      sizeCalculation: (b) => Math.max(1, b.length),
    });
  }

  /** Index of the span holding uncompressed offset `offset`. */
  spanAt(offset: number): number {
    const spans = this.#index.spans;
    let lo = 0;
    let hi = spans.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((spans[mid] as IndexSpan).out <= offset) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  /** Uncompressed [out, end) of span `i`. */
  spanRange(i: number): { out: number; end: number } {
    const spans = this.#index.spans;
    return { out: (spans[i] as IndexSpan).out, end: spans[i + 1]?.out ?? this.#index.uncompressedSize };
  }

  /** The uncompressed range decoded and cached as one unit around `offset`. */
  unitAt(offset: number): { out: number; end: number } {
    const r = this.spanRange(this.spanAt(offset));
    const p = Math.floor((offset - r.out) / this.#piece);
    return { out: r.out + p * this.#piece, end: Math.min(r.end, r.out + (p + 1) * this.#piece) };
  }

  /** Verified uncompressed bytes [offset, offset+length), clipped at the end of the stream. */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.#index.uncompressedSize);
    if (end <= offset) return Buffer.alloc(0);
    const wanted: { span: number; piece: number; out: number }[] = [];
    for (let s = this.spanAt(offset); s <= this.spanAt(end - 1); s++) {
      const r = this.spanRange(s);
      const first = Math.floor((Math.max(offset, r.out) - r.out) / this.#piece);
      const last = Math.floor((Math.min(end, r.end) - 1 - r.out) / this.#piece);
      for (let p = first; p <= last; p++) wanted.push({ span: s, piece: p, out: r.out + p * this.#piece });
    }
    const missing = wanted.filter((w) => {
      const cur = this.#cursors.get(w.span);
      return !this.#decoded.has(`${w.span}:${w.piece}`) && !(cur && cur.piece <= w.piece);
    });
    this.#prefetchSpans([...missing.map((w) => w.span), ...this.#readAhead(missing.map((w) => w.span))]);
    const bufs = await Promise.all(wanted.map((w) => this.#getPiece(w.span, w.piece)));
    const parts = bufs.map((b, k) => {
      const out = (wanted[k] as { out: number }).out;
      return b.subarray(Math.max(0, offset - out), Math.min(b.length, end - out));
    });
    return parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts);
  }

  async #getPiece(span: number, piece: number): Promise<Buffer> {
    const key = `${span}:${piece}`;
    const hit = this.#decoded.get(key);
    if (hit) return hit;
    const cur = this.#cursors.get(span);
    if (cur && cur.piece <= piece) return this.#advance(span, cur, piece);
    const input = await this.#compressed(span);
    const again = this.#decoded.get(key);
    if (again) return again;
    return this.#decode(span, piece, input);
  }

  /** Decodes span `span` from its access point far enough to yield `piece`, caching every piece on the way. */
  #decode(span: number, piece: number, input: Buffer): Buffer {
    const s = this.#index.spans[span] as IndexSpan;
    const { out, end } = this.spanRange(span);
    const from = input.subarray(s.in - (s.bits ? 1 : 0) - s.start);
    if (this.#index.compression === "zstd" && end - out > 2 * this.#piece) {
      const cur = { cursor: new ZstdCursor(from), piece: 0 };
      this.#cursors.delete(span);
      this.#cursors.set(span, cur);
      while (this.#cursors.size > MAX_CURSORS) this.#cursors.delete(this.#cursors.keys().next().value as number);
      return this.#advance(span, cur, piece);
    }
    let decoded: Buffer;
    try {
      decoded = decodeFrom(this.#index.compression, from, s, 0, end - out);
    } catch (err) {
      throw new LayerVerificationError(this.#index.digest, `span ${span} does not decode: ${String(err)}`);
    }
    if (decoded.length !== end - out) this.#short(span, decoded.length, end - out);
    let result = decoded;
    for (let p = 0; p * this.#piece < decoded.length; p++) {
      const b = decoded.subarray(p * this.#piece, (p + 1) * this.#piece);
      this.#decoded.set(`${span}:${p}`, b);
      if (p === piece) result = b;
    }
    return result;
  }

  #advance(span: number, cur: { cursor: ZstdCursor; piece: number }, piece: number): Buffer {
    const { out, end } = this.spanRange(span);
    let last: Buffer = Buffer.alloc(0);
    while (cur.piece <= piece) {
      const want = Math.min(this.#piece, end - out - cur.piece * this.#piece);
      try {
        last = cur.cursor.next(want);
      } catch (err) {
        this.#cursors.delete(span);
        throw new LayerVerificationError(this.#index.digest, `span ${span} does not decode: ${String(err)}`);
      }
      if (last.length !== want) this.#short(span, cur.cursor.position, end - out);
      this.#decoded.set(`${span}:${cur.piece}`, last);
      cur.piece++;
    }
    if (cur.piece * this.#piece >= end - out) this.#cursors.delete(span);
    return last;
  }

  #short(span: number, got: number, want: number): never {
    throw new LayerVerificationError(this.#index.digest, `span ${span} decodes to ${got} bytes, want ${want}`);
  }

  /** Spans after the last of `spans`, back to back, within readAheadBytes of compressed bytes. */
  #readAhead(spans: number[]): number[] {
    if (spans.length === 0 || this.#readAheadBytes <= 0) return [];
    const all = this.#index.spans;
    const last = Math.max(...spans);
    const from = (all[last] as IndexSpan).end;
    const out: number[] = [];
    for (let i = last + 1; i < all.length; i++) {
      const s = all[i] as IndexSpan;
      if (s.end - from > this.#readAheadBytes || this.#fetching.has(i) || this.#decoded.has(`${i}:0`)) break;
      out.push(i);
    }
    return out;
  }

  /** Verified compressed bytes of a span, fetched (or joined in flight). */
  #compressed(span: number): Promise<Buffer> {
    this.#prefetchSpans([span]);
    return this.#fetching.get(span) as Promise<Buffer>;
  }

  /** Starts fetches for spans not yet in flight, one Range read per run of adjacent spans. */
  #prefetchSpans(spans: number[]): void {
    const todo = [...new Set(spans)].filter((s) => !this.#fetching.has(s)).sort((a, b) => a - b);
    let run: number[] = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const ids = run;
      run = [];
      const fetched = this.#fetch(ids[0] as number, ids[ids.length - 1] as number);
      ids.forEach((id, k) => {
        const p = verifiedItem(fetched, k).finally(() => this.#fetching.delete(id));
        p.catch(() => undefined); // the reader awaiting it reports the failure
        this.#fetching.set(id, p);
      });
    };
    for (const s of todo) {
      if (run.length && s !== (run[run.length - 1] as number) + 1) flush();
      run.push(s);
    }
    flush();
  }

  /** Spans first..last in one read; a span that fails its digest fails alone (read-ahead must not spoil a good read). */
  async #fetch(first: number, last: number): Promise<(Buffer | LayerVerificationError)[]> {
    const spans = this.#index.spans;
    const start = (spans[first] as IndexSpan).start;
    const end = (spans[last] as IndexSpan).end;
    const digest = this.#index.digest;
    let data: Buffer;
    try {
      data = await this.#blob.read(start, end - start);
    } catch (err) {
      throw new UnavailableError(`layer ${digest}: fetching bytes ${start}-${end}`, { cause: err });
    }
    this.fetchedBytes += end - start;
    if (data.length < end - start) throw new UnavailableError(`layer ${digest}: short read at ${start}: ${data.length} of ${end - start}`);
    const out: (Buffer | LayerVerificationError)[] = [];
    for (let i = first; i <= last; i++) {
      const s = spans[i] as IndexSpan;
      const input = data.subarray(s.start - start, s.end - start);
      const got = sha256Digest(input);
      if (got !== s.digest) {
        out.push(new LayerVerificationError(digest, `span ${i} (bytes ${s.start}-${s.end}) digest is ${got}, want ${s.digest}`));
        continue;
      }
      this.#blob.verified?.(s.start, input);
      out.push(input);
    }
    return out;
  }
}
