// A layer blob read through the node-local cache: ranges the cache holds are
// read from disk, others are fetched (registry, mirror or peer) and, once the
// layer index has verified them, kept for the next reader. Another augur on the
// same cache directory fetching the same bytes is waited for, not repeated.
import type { BlobRange, BlobSource, RangeFetcher, RangeOrigin } from "./blob-source.js";
import { logger } from "../util/logging.js";
import { errorMessage } from "../errdefs/errors.js";
import type { LayerCache, RangeClaim } from "../cache/layer-cache.js";
import { RecentReads } from "./recent-reads.js";

const log = logger("fetch");
/** A claim whose bytes were fetched but never verified (a bad fetch) is released after this long. */
const UNVERIFIED_RELEASE_MS = 2_000;

/** What the cache had of a range: its bytes, or the claim to fetch them. */
interface Found {
  data?: Buffer;
  claim?: RangeClaim;
}

export class CachedBlob implements BlobSource {
  /** Compressed bytes fetched from outside the cache. */
  fetchedBytes = 0;

  /** Fetches claimed in the cache's ledger, by offset: released when their bytes are stored. */
  readonly #claims = new Map<number, RangeClaim>();
  /** Recent reads -> whether the cache answered them, to drop or blame their bytes if they fail their check. */
  readonly #answeredBy = new RecentReads<"cache" | "origin">();
  readonly #origin: RangeOrigin;
  #wholeOnly = false;

  constructor(
    readonly cache: LayerCache,
    readonly digest: string,
    readonly size: number,
    origin: RangeOrigin | RangeFetcher,
  ) {
    this.#origin = typeof origin === "function" ? { fetch: origin } : origin;
  }

  async read(offset: number, length: number): Promise<Buffer> {
    const len = Math.max(0, Math.min(length, this.size - offset));
    const found = await this.#beforeFetch(offset, len);
    if (found.data) return found.data;
    let data: Buffer;
    try {
      data = await this.#origin.fetch(offset, len);
    } catch (err) {
      found.claim?.release();
      throw err;
    }
    return this.#fetched(offset, len, data, found.claim);
  }

  /**
   * Several ranges: those the cache holds from disk, the rest in one request
   * to the origin where it takes several ranges at once (else one read each).
   */
  readRanges(ranges: readonly BlobRange[]): Promise<Buffer>[] {
    const origin = this.#origin;
    if (!origin.fetchRanges || ranges.length < 2) return ranges.map((r) => this.read(r.offset, r.length));
    const clipped = ranges.map((r) => ({ offset: r.offset, length: Math.max(0, Math.min(r.length, this.size - r.offset)) }));
    // each range settles on its own: one that fails here fails alone, and claims taken for the others are kept
    const batch = Promise.allSettled(clipped.map((r) => this.#beforeFetch(r.offset, r.length))).then((found) => {
      const missing = clipped.flatMap((_, k) => (found[k]?.status === "fulfilled" && !found[k].value.data ? [k] : []));
      const fetched = missing.length ? (origin.fetchRanges as NonNullable<RangeOrigin["fetchRanges"]>)(missing.map((k) => clipped[k] as BlobRange)) : [];
      return { found, fetched: new Map(missing.map((k, i) => [k, fetched[i] as Promise<Buffer>])) };
    });
    return clipped.map(async (r, k) => {
      const { found, fetched } = await batch;
      const f = found[k] as PromiseSettledResult<Found>;
      if (f.status === "rejected") throw f.reason;
      if (f.value.data) return f.value.data;
      let data: Buffer;
      try {
        data = await (fetched.get(k) as Promise<Buffer>);
      } catch (err) {
        f.value.claim?.release();
        throw err;
      }
      return this.#fetched(r.offset, r.length, data, f.value.claim);
    });
  }

  takesSeveralRanges(): boolean {
    return this.#origin.fetchRanges !== undefined && (this.#origin.takesSeveralRanges?.() ?? true);
  }

  /** The range from the cache, or else the claim to fetch it (none: a neighbour's fetch did not land in time). */
  async #beforeFetch(offset: number, len: number): Promise<Found> {
    const local = await this.cache.readRange(this.digest, offset, len, { wholeOnly: this.#wholeOnly });
    if (local) return { data: this.#answered(offset, len, "cache", local) };
    const claim = await this.cache.claimRange(this.digest, offset, len);
    if (!claim) {
      // a neighbour fetched them meanwhile
      const landed = await this.cache.readRange(this.digest, offset, len, { wholeOnly: this.#wholeOnly });
      if (landed) return { data: this.#answered(offset, len, "cache", landed) };
    }
    return claim ? { claim } : {};
  }

  /** Bytes the origin sent for [offset, offset+length): its claim is held until they are verified and stored. */
  #fetched(offset: number, length: number, data: Buffer, claim: RangeClaim | undefined): Buffer {
    this.fetchedBytes += data.length;
    if (claim) {
      this.#claims.get(offset)?.release();
      this.#claims.set(offset, claim);
      setTimeout(() => this.#release(offset, claim), UNVERIFIED_RELEASE_MS).unref();
    }
    return this.#answered(offset, length, "origin", data);
  }

  /**
   * From now on, bytes only from the registry or the whole blob in the cache
   * (digest-checked), never from cached chunks: the layer's index came from a
   * peer, and chunks may be a peer's too (augur cache sync).
   */
  registryOnly(): void {
    this.#wholeOnly = true;
    this.#origin.registryOnly?.();
  }

  async rejected(offset: number, length: number): Promise<boolean> {
    const by = this.#answeredBy.take(offset, length);
    if (by === "cache") {
      // spoiled on disk: dropped, so the next read fetches them (an intact whole blob stays: the check was wrong)
      try {
        return await this.cache.dropRange(this.digest, offset, length);
      } catch (err) {
        log.warn("could not drop spoiled cache bytes", { layer: this.digest, offset, error: errorMessage(err) });
        return false;
      }
    }
    return by === "origin" ? ((await this.#origin.rejected?.(offset, length)) ?? false) : false;
  }

  #answered(offset: number, length: number, by: "cache" | "origin", data: Buffer): Buffer {
    this.#answeredBy.set(offset, length, by);
    return data;
  }

  verified(offset: number, data: Buffer): void {
    // No copy: readers only slice verified buffers, never write to them.
    this.cache.storeRange(this.digest, offset, data).then(
      () => this.#release(offset),
      (err: unknown) => {
        this.#release(offset);
        log.warn("could not keep verified layer bytes in the cache", { layer: this.digest, offset, error: errorMessage(err) });
      },
    );
  }

  #release(offset: number, only?: RangeClaim): void {
    const claim = this.#claims.get(offset);
    if (!claim || (only && claim !== only)) return;
    this.#claims.delete(offset);
    claim.release();
  }
}
