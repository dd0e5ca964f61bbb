// Reads uncompressed ranges of a plain layer through its TarIndex: fetches
// only the compressed spans that cover the range (adjacent missing spans in
// one Range read), checks each against its digest before decoding it from its
// access point, and keeps recently decoded spans so sequential reads decode
// each span once. Concurrent reads of one span share its fetch.
import { createHash } from "node:crypto";
import { LRUCache } from "lru-cache";
import { UnavailableError } from "../errdefs/errors.js";
import { decodeFrom } from "./decoders.js";
import { LayerVerificationError, type BlobSource } from "./layer-index.js";
import type { IndexSpan, TarIndex } from "./tar-index.js";

export interface SpanReaderOptions {
  /** Bytes of decoded spans kept in memory; default 64 MiB. */
  cacheBytes?: number;
}

export class SpanReader {
  readonly #index: TarIndex;
  readonly #blob: BlobSource;
  readonly #decoded: LRUCache<number, Buffer>;
  readonly #inflight = new Map<number, Promise<Buffer>>();
  /** Compressed bytes requested from the blob so far. */
  fetchedBytes = 0;

  constructor(index: TarIndex, blob: BlobSource, opts: SpanReaderOptions = {}) {
    this.#index = index;
    this.#blob = blob;
    this.#decoded = new LRUCache<number, Buffer>({
      maxSize: opts.cacheBytes ?? 64 << 20,
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

  /** Verified uncompressed bytes [offset, offset+length), clipped at the end of the stream. */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(offset + length, this.#index.uncompressedSize);
    if (end <= offset) return Buffer.alloc(0);
    const first = this.spanAt(offset);
    const last = this.spanAt(end - 1);
    const parts = await Promise.all(this.#spans(first, last));
    const pieces = parts.map((buf, k) => {
      const { out } = this.spanRange(first + k);
      return buf.subarray(Math.max(0, offset - out), Math.min(buf.length, end - out));
    });
    return pieces.length === 1 ? (pieces[0] as Buffer) : Buffer.concat(pieces);
  }

  /** Decoded spans first..last, from cache, in flight, or fetched in contiguous runs. */
  #spans(first: number, last: number): Promise<Buffer>[] {
    const result: Promise<Buffer>[] = [];
    let run: number[] = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const ids = run;
      run = [];
      const fetched = this.#fetch(ids[0] as number, ids[ids.length - 1] as number);
      ids.forEach((id, k) => {
        const p = fetched.then((bufs) => bufs[k] as Buffer).finally(() => this.#inflight.delete(id));
        this.#inflight.set(id, p);
        result[id - first] = p;
      });
    };
    for (let i = first; i <= last; i++) {
      const hit = this.#decoded.get(i);
      const flying = this.#inflight.get(i);
      if (hit || flying) {
        flush();
        result[i - first] = hit ? Promise.resolve(hit) : (flying as Promise<Buffer>);
      } else {
        run.push(i);
      }
    }
    flush();
    return result;
  }

  async #fetch(first: number, last: number): Promise<Buffer[]> {
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
    const out: Buffer[] = [];
    for (let i = first; i <= last; i++) {
      const s = spans[i] as IndexSpan;
      const input = data.subarray(s.start - start, s.end - start);
      const got = `sha256:${createHash("sha256").update(input).digest("hex")}`;
      if (got !== s.digest) throw new LayerVerificationError(digest, `span ${i} (bytes ${s.start}-${s.end}) digest is ${got}, want ${s.digest}`);
      const { out: uout, end: uend } = this.spanRange(i);
      let decoded: Buffer;
      try {
        decoded = decodeFrom(this.#index.compression, input.subarray(s.in - (s.bits ? 1 : 0) - s.start), s, 0, uend - uout);
      } catch (err) {
        throw new LayerVerificationError(digest, `span ${i} does not decode: ${String(err)}`);
      }
      if (decoded.length !== uend - uout) throw new LayerVerificationError(digest, `span ${i} decodes to ${decoded.length} bytes, want ${uend - uout}`);
      this.#decoded.set(i, decoded);
      out.push(decoded);
    }
    return out;
  }
}
