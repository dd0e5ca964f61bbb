// Reads uncompressed ranges of a plain layer through its TarIndex: the
// compressed spans that cover the range come through the unit fetcher
// (fetch/unit-fetcher.ts: adjacent missing spans in one Range read, each
// checked against its digest, concurrent reads sharing a fetch); each is
// decoded from its access point, and decoded pieces of `spanSize` bytes are
// cached so sequential reads decode each byte once.
// A zstd span can be far longer than spanSize (a single-frame blob is one
// span): it is decoded only as far as reads reach, and a cursor remembers
// where, so reading on continues instead of starting over from the frame.
import { LRUCache } from "lru-cache";
import { decodeFrom, ZstdCursor } from "./decoders.js";
import type { BlobSource } from "../fetch/blob-source.js";
import { DEMAND_ONLY, type FetchQueue } from "../fetch/fetch-queue.js";
import type { FetchStats } from "../fetch/fetch-stats.js";
import { UnitFetcher, type UnitFormat } from "../fetch/unit-fetcher.js";
import { LayerVerificationError } from "../fetch/verification.js";
import type { AheadOptions } from "./layer-index.js";
import { cellDigestMatches, type IndexCell, type IndexSpan, type TarIndex } from "./tar-index.js";
import { sha256Digest } from "../util/digest.js";
import { READ_AHEAD_BYTES, SPECULATIVE_REQUEST_BYTES } from "./speculative-fetches.js";

export interface SpanReaderOptions {
  /** Bytes of decoded data kept in memory; default 16 MiB (the kernel's page cache keeps what FUSE served). */
  cacheBytes?: number;
  /**
   * The fetch queue (prefetch/scheduler.ts). Without it a reader fetches
   * only what reads ask for: right for a blob on local disk.
   */
  queue?: FetchQueue;
  /** Where reads' hits and misses are counted. */
  stats?: FetchStats;
  /**
   * With `queue`: after a miss, the spans that follow it, up to this
   * many compressed bytes, are fetched speculatively (default READ_AHEAD_BYTES).
   * In the request of the miss itself they made python3's start-up fetch 30 MB
   * instead of 17 MB for no gain (docs/benchmarks.md); beside it they cost
   * the waiting read nothing.
   */
  readAheadBytes?: number;
}

/** Uncompressed ranges worth fetching ahead, and how many compressed bytes they may cost together. */
export interface AheadRanges {
  ranges: { offset: number; length: number }[];
  maxBytes: number;
}
/** Verified compressed spans kept until a read decodes them (fetched ahead, mostly). */
const KEPT_SPAN_BYTES = 32 << 20;

const MAX_CURSORS = 2;
/** Compressed bytes of cells fetched ahead that a read decodes on past its own (SpanReader.#keptAfter). */
const DECODE_ON_BYTES = 512 << 10;

export interface ReadOptions {
  /**
   * After a miss, also fetch the units that follow it (READ_AHEAD_BYTES;
   * default true). Off for reads of tar headers (entry checks): a header
   * says nothing of what is read next, and on the python image the 512 KiB
   * after each checked header was 2.2 MB nobody read (docs/benchmarks.md).
   */
  followMiss?: boolean;
}

export class SpanReader {
  readonly #index: TarIndex;
  readonly #piece: number;
  readonly #readAheadBytes: number;
  readonly #speculative: boolean;
  readonly #fetcher: UnitFetcher<Buffer>;
  readonly #decoded: LRUCache<string, Buffer>;
  readonly #cursors = new Map<number, { cursor: ZstdCursor; piece: number }>();
  /** Units are the index's verification cells (gzip, uncompressed), not whole spans. */
  readonly #cellMode: boolean;
  /** Cell mode: the longest decoded prefix of each span (from its access point). */
  readonly #prefixes: LRUCache<number, Buffer>;

  constructor(index: TarIndex, blob: BlobSource, opts: SpanReaderOptions = {}) {
    this.#index = index;
    this.#piece = index.spanSize;
    this.#speculative = opts.queue !== undefined;
    this.#readAheadBytes = opts.readAheadBytes ?? READ_AHEAD_BYTES;
    const spans = index.spans;
    const cells = index.cells;
    const cellSize = index.cellSize ?? 0;
    this.#cellMode = cells !== undefined && cellSize > 0;
    const format: UnitFormat<Buffer> = cells && cellSize
      ? {
          digest: index.digest,
          count: cells.length,
          bounds: (i) => ({ start: i * cellSize, end: Math.min((i + 1) * cellSize, index.blobSize) }),
          verify: (i, input) => {
            const got = sha256Digest(input);
            const want = (cells[i] as IndexCell).digest;
            if (!cellDigestMatches(got, want)) throw new LayerVerificationError(index.digest, `cell ${i} (bytes ${i * cellSize}-${i * cellSize + input.length}) digest is ${got}, want ${want}`);
            return input;
          },
        }
      : {
          digest: index.digest,
          count: spans.length,
          bounds: (i) => spans[i] as IndexSpan,
          verify: (i, input) => {
            const s = spans[i] as IndexSpan;
            const got = sha256Digest(input);
            if (got !== s.digest) throw new LayerVerificationError(index.digest, `span ${i} (bytes ${s.start}-${s.end}) digest is ${got}, want ${s.digest}`);
            return input;
          },
        };
    this.#fetcher = new UnitFetcher<Buffer>(format, blob, opts.queue ?? DEMAND_ONLY, { keepBytes: KEPT_SPAN_BYTES, ...(opts.stats ? { stats: opts.stats } : {}) });
    this.#decoded = new LRUCache<string, Buffer>({
      maxSize: Math.max(1, opts.cacheBytes ?? 16 << 20),
      sizeCalculation: (b) => Math.max(1, b.length),
    });
    this.#prefixes = new LRUCache<number, Buffer>({
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
    if (this.#cellMode) return r;
    const p = Math.floor((offset - r.out) / this.#piece);
    return { out: r.out + p * this.#piece, end: Math.min(r.end, r.out + (p + 1) * this.#piece) };
  }

  /** Whether reads fetch ahead of themselves (a fetch queue was given). */
  get speculative(): boolean {
    return this.#speculative;
  }

  /** Queues every unit not fetched yet, in blob order, in requests of up to 1 MiB. */
  fetchAll(opts: Omit<AheadOptions, "maxRequestBytes">): void {
    this.#fetcher.aheadAll({ ...opts, maxRequestBytes: 1 << 20 });
  }

  progress(): { fetchedBytes: number; totalBytes: number } {
    return this.#fetcher.progress();
  }

  /** This layer's read hits and misses. */
  get fetchStats(): FetchStats {
    return this.#fetcher.layerStats;
  }

  /** Compressed bytes requested from the blob so far. */
  get fetchedBytes(): number {
    return this.#fetcher.fetchedBytes;
  }

  /**
   * Verified uncompressed bytes [offset, offset+length), clipped at the end
   * of the stream. With a speculative queue, a miss also queues the spans
   * after it, and `ahead` the spans of those ranges (after the read's own
   * fetches have started, so it never waits behind them).
   */
  async read(offset: number, length: number, ahead: readonly AheadRanges[] = [], opts: ReadOptions = {}): Promise<Buffer> {
    const end = Math.min(offset + length, this.#index.uncompressedSize);
    if (end <= offset) return Buffer.alloc(0);
    const follow = opts.followMiss ?? true;
    if (this.#cellMode) return this.#readCells(offset, end, ahead, follow);
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
    const missingSpans = [...new Set(missing.map((w) => w.span))];
    // spans neither kept nor in flight: the read has to fetch them (a miss)
    const fetched = missingSpans.filter((span) => !this.#fetcher.held(span));
    void this.#fetcher.get(missingSpans); // starts them all at once, adjacent ones in one request; awaited per piece below
    // beside misses only: a read that finds its bytes fetched ahead (predicted) needs no guessing
    if (this.#speculative && fetched.length) this.#speculate([...(follow ? this.#following(fetched) : []), ...ahead.flatMap((a) => this.#spansOf(a))]);
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

  /** Spans of `ahead`'s ranges that are not held, in order, within its byte budget. */
  #spansOf(ahead: AheadRanges): number[] {
    const spans = this.#index.spans;
    const out: number[] = [];
    let left = ahead.maxBytes;
    for (const r of ahead.ranges) {
      const end = Math.min(r.offset + r.length, this.#index.uncompressedSize);
      if (end <= r.offset) continue;
      for (let i = this.spanAt(r.offset); i <= this.spanAt(end - 1); i++) {
        if (this.#held(i) || out.includes(i)) continue;
        const s = spans[i] as IndexSpan;
        left -= s.end - s.start;
        if (left < 0) return out;
        out.push(i);
      }
    }
    return out;
  }

  /** Whether span `i` is decoded, kept, or being fetched. */
  #held(i: number): boolean {
    return this.#fetcher.held(i) || this.#decoded.has(`${i}:0`) || this.#cursors.has(i);
  }

  /** Spans after the last of `spans`, back to back, within readAheadBytes of compressed bytes, up to one already held. */
  #following(spans: number[]): number[] {
    if (spans.length === 0 || this.#readAheadBytes <= 0) return [];
    const all = this.#index.spans;
    const last = Math.max(...spans);
    const from = (all[last] as IndexSpan).end;
    const out: number[] = [];
    for (let i = last + 1; i < all.length; i++) {
      const s = all[i] as IndexSpan;
      if (s.end - from > this.#readAheadBytes || this.#held(i)) break;
      out.push(i);
    }
    return out;
  }

  /**
   * Queues fetches of the spans behind uncompressed stream ranges (in order)
   * as jobs of the fetch queue; returns the compressed bytes queued.
   */
  fetchAhead(ranges: readonly { offset: number; length: number }[], opts: AheadOptions): number {
    if (this.#cellMode) {
      const ids = this.#cellsOf(ranges, Infinity);
      if (ids.length) this.#fetcher.ahead({ ids, ...opts });
      return ids.reduce((n, i) => n + this.#cellBytes(i), 0);
    }
    const ids: number[] = [];
    const seen = new Set<number>();
    let bytes = 0;
    for (const r of ranges) {
      const end = Math.min(r.offset + r.length, this.#index.uncompressedSize);
      if (end <= r.offset) continue;
      for (let i = this.spanAt(r.offset); i <= this.spanAt(end - 1); i++) {
        if (seen.has(i) || this.#held(i)) continue;
        seen.add(i);
        ids.push(i);
        const s = this.#index.spans[i] as IndexSpan;
        bytes += s.end - s.start;
      }
    }
    if (ids.length) this.#fetcher.ahead({ ids, ...opts });
    return bytes;
  }

  // ---- cell mode (gzip and uncompressed layers whose index has cells) ----

  #cellBytes(i: number): number {
    const size = this.#index.cellSize as number;
    return Math.min(size, this.#index.blobSize - i * size);
  }

  /**
   * The cells span `s` needs to decode up to uncompressed offset `upTo`: from
   * the one holding its access point to the first that reaches `upTo`
   * (uncompressed layers: just those holding [from, upTo)).
   */
  #cellsFor(s: number, from: number, upTo: number): number[] {
    const span = this.#index.spans[s] as IndexSpan;
    const cells = this.#index.cells as IndexCell[];
    const size = this.#index.cellSize as number;
    const last = Math.floor((span.end - 1) / size);
    let first = Math.floor(span.start / size);
    if (this.#index.compression === "none") first = Math.floor(from / size);
    const ids: number[] = [];
    for (let c = first; c <= last; c++) {
      ids.push(c);
      if ((cells[c] as IndexCell).reach >= upTo) break;
    }
    return ids;
  }

  /** Cells behind uncompressed ranges, in order, not held, within `maxBytes` of compressed bytes. */
  #cellsOf(ranges: readonly { offset: number; length: number }[], maxBytes: number): number[] {
    const out: number[] = [];
    const seen = new Set<number>();
    let left = maxBytes;
    for (const r of ranges) {
      const end = Math.min(r.offset + r.length, this.#index.uncompressedSize);
      if (end <= r.offset) continue;
      for (let s = this.spanAt(r.offset); s <= this.spanAt(end - 1); s++) {
        const { out: sOut, end: sEnd } = this.spanRange(s);
        const upTo = Math.min(end, sEnd);
        if ((this.#prefixes.peek(s)?.length ?? 0) >= upTo - sOut) continue;
        for (const c of this.#cellsFor(s, Math.max(r.offset, sOut), upTo)) {
          if (seen.has(c) || this.#fetcher.held(c)) continue;
          seen.add(c);
          left -= this.#cellBytes(c);
          if (left < 0) return out;
          out.push(c);
        }
      }
    }
    return out;
  }

  async #readCells(offset: number, end: number, ahead: readonly AheadRanges[], follow: boolean): Promise<Buffer> {
    const plain = this.#index.compression === "none";
    const parts: { s: number; lo: number; hi: number; cells: number[] }[] = [];
    for (let s = this.spanAt(offset); s <= this.spanAt(end - 1); s++) {
      const r = this.spanRange(s);
      const lo = Math.max(offset, r.out);
      const hi = Math.min(end, r.end);
      const have = plain ? 0 : (this.#prefixes.get(s)?.length ?? 0);
      const covered = have >= hi - r.out;
      // decoded already (an earlier read decoded on past itself): its cells fetched ahead were of use
      if (covered) this.#fetcher.used(this.#cellsFor(s, lo, hi));
      parts.push({ s, lo, hi, cells: covered ? [] : this.#cellsFor(s, lo, hi) });
    }
    const all = [...new Set(parts.flatMap((p) => p.cells))];
    const fetched = all.filter((c) => !this.#fetcher.held(c)); // the read has to fetch these: a miss
    const got = this.#fetcher.get(all); // all at once: adjacent cells in one request
    const pending = new Map(all.map((c, k) => [c, got[k] as Promise<Buffer>]));
    if (this.#speculative && fetched.length) {
      // after a miss, the cells that follow it, up to readAheadBytes
      const following: number[] = [];
      let budget = follow ? this.#readAheadBytes : 0;
      for (let c = Math.max(...fetched) + 1; c < (this.#index.cells as IndexCell[]).length; c++) {
        budget -= this.#cellBytes(c);
        if (budget < 0 || this.#fetcher.held(c)) break;
        following.push(c);
      }
      const more = ahead.flatMap((a) => this.#cellsOf(a.ranges, a.maxBytes));
      const ids = [...following, ...more].filter((c) => !this.#fetcher.held(c));
      if (ids.length) this.#fetcher.ahead({ ids, priority: "speculative", maxRequestBytes: SPECULATIVE_REQUEST_BYTES });
    }
    const bufs = await Promise.all(parts.map((p) => (plain ? this.#plainPart(p, pending) : this.#spanPart(p, pending))));
    return bufs.length === 1 ? (bufs[0] as Buffer) : Buffer.concat(bufs);
  }

  /** Uncompressed layer: the bytes are the cells'. */
  async #plainPart(p: { lo: number; hi: number; cells: number[] }, pending: Map<number, Promise<Buffer>>): Promise<Buffer> {
    const size = this.#index.cellSize as number;
    const bufs = await Promise.all(p.cells.map((c) => pending.get(c) as Promise<Buffer>));
    const joined = bufs.length === 1 ? (bufs[0] as Buffer) : Buffer.concat(bufs);
    const base = (p.cells[0] as number) * size;
    return joined.subarray(p.lo - base, p.hi - base);
  }

  /** Bytes [lo, hi) of span `s`, decoded from its access point over the cells that reach hi. */
  async #spanPart(p: { s: number; lo: number; hi: number; cells: number[] }, pending: Map<number, Promise<Buffer>>): Promise<Buffer> {
    const { s, lo, hi } = p;
    const r = this.spanRange(s);
    let cells = p.cells;
    for (;;) {
      const have = this.#prefixes.get(s);
      if (have && have.length >= hi - r.out) return have.subarray(lo - r.out, hi - r.out);
      const bufs = await Promise.all(cells.map((c) => pending.get(c) ?? (this.#fetcher.get([c])[0] as Promise<Buffer>)));
      const on = this.#keptAfter(s, cells);
      let decoded: Buffer;
      try {
        decoded = this.#decodePrefix(s, cells, on.length ? [...bufs, ...on] : bufs);
      } catch (err) {
        // cells decoded on may end inside a gzip member's header, which the decoder refuses: the
        // read's own cells decide
        if (!on.length) throw err;
        decoded = this.#decodePrefix(s, cells, bufs);
      }
      if (decoded.length >= hi - r.out) {
        if (decoded.length > (this.#prefixes.peek(s)?.length ?? 0)) this.#prefixes.set(s, decoded);
        return decoded.subarray(lo - r.out, hi - r.out);
      }
      // the cells reached less than their index said: take one more, or the span is bad
      const size = this.#index.cellSize as number;
      const next = (cells[cells.length - 1] as number) + 1;
      const span = this.#index.spans[s] as IndexSpan;
      if (next * size >= span.end) this.#short(s, decoded.length, hi - r.out);
      cells = [...cells, next];
    }
  }

  /**
   * The cells right after `cells` that are in memory already (fetched
   * ahead), up to the span's end and DECODE_ON_BYTES: decoded in the same
   * pass, so the reads that follow find their bytes in the span's prefix.
   * Without them, a file read 128 KiB at a time decoded its span from the
   * access point again for every read.
   */
  #keptAfter(s: number, cells: readonly number[]): Buffer[] {
    const span = this.#index.spans[s] as IndexSpan;
    const size = this.#index.cellSize as number;
    const out: Buffer[] = [];
    let budget = DECODE_ON_BYTES;
    for (let c = (cells[cells.length - 1] as number) + 1; c * size < span.end && budget > 0; c++) {
      const b = this.#fetcher.kept(c);
      if (!b) break;
      out.push(b);
      budget -= b.length;
    }
    return out;
  }

  /** Decodes span `s` from its access point as far as the cells' bytes go (up to its end). */
  #decodePrefix(s: number, cells: number[], bufs: Buffer[]): Buffer {
    const span = this.#index.spans[s] as IndexSpan;
    const { out, end } = this.spanRange(s);
    const size = this.#index.cellSize as number;
    const joined = bufs.length === 1 ? (bufs[0] as Buffer) : Buffer.concat(bufs);
    const base = (cells[0] as number) * size;
    // the bytes from the span's access point on (from the byte holding its leftover bits)
    const from = joined.subarray(span.in - (span.bits ? 1 : 0) - base, Math.min(joined.length, span.end - base));
    try {
      return decodeFrom(this.#index.compression, from, span, 0, end - out);
    } catch (err) {
      throw new LayerVerificationError(this.#index.digest, `span ${s} does not decode: ${String(err)}`);
    }
  }

  /** Queues speculative fetches of `spans` (most useful first) as one batch; each request checks again when it starts. */
  #speculate(spans: number[]): void {
    const todo = spans.filter((i) => !this.#held(i));
    if (todo.length) this.#fetcher.ahead({ ids: todo, priority: "speculative", maxRequestBytes: SPECULATIVE_REQUEST_BYTES });
  }

  /** Verified compressed bytes of a span: kept, joined in flight, or fetched now. */
  #compressed(span: number): Promise<Buffer> {
    return this.#fetcher.get([span])[0] as Promise<Buffer>;
  }
}
