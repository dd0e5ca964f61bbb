// The one path by which layer bytes are fetched and verified, for every
// format: a format cuts its blob into verification units (eStargz chunks,
// index spans), says where each lies and how to check it; the fetcher does
// the rest. A read's units come from memory, join a fetch in flight, or are
// fetched at once, adjacent ones in one Range request. Units nobody has asked
// for yet are fetched as jobs of the fetch queue (predicted, read ahead).
// Every unit is checked on its own: a bad one fails alone, so bytes fetched
// ahead never spoil a good read, and nothing unchecked is ever returned.
import { LRUCache } from "lru-cache";
import { UnavailableError } from "../errdefs/errors.js";
import type { BlobSource } from "./blob-source.js";
import type { FetchJob, FetchPlan, FetchPriority, FetchQueue } from "./fetch-queue.js";
import { FetchStats } from "./fetch-stats.js";
import { adjacentRuns, rankedRuns } from "./unit-runs.js";
import { LayerVerificationError } from "./verification.js";

/** What a layer format tells the fetcher about its units. */
export interface UnitFormat<T> {
  /** Layer digest, named in errors. */
  readonly digest: string;
  /** Number of units: ids are 0..count-1. */
  readonly count: number;
  /** Compressed blob bytes [start, end) of unit `id`; ids are in blob order. */
  bounds(id: number): { start: number; end: number };
  /** Checks unit `id`'s compressed bytes; returns what readers get. Throws LayerVerificationError. */
  verify(id: number, bytes: Buffer): T;
  /** Whether a verified unit's compressed bytes are worth keeping in the node's cache (default: yes). */
  cacheable?(id: number): boolean;
}

export interface UnitFetcherOptions {
  /** Bytes of verified units kept in memory for reads to come (default 32 MiB). */
  keepBytes?: number;
  /** Where hits and misses are counted (shared by every layer of an augur). */
  stats?: FetchStats;
  /**
   * A read's request also takes the whole units around it within blocks of
   * this many bytes (0: none). Small files sit side by side in a layer and
   * are read together; a few KB more in a request the read makes anyway
   * save round trips later (stargz-snapshotter fetches 50000-byte blocks).
   */
  alignBytes?: number;
}

export interface AheadRequest {
  /** Units, most useful first. */
  ids: readonly number[];
  priority: FetchPriority;
  /** Compressed bytes of one request at most. */
  maxRequestBytes: number;
  plan?: FetchPlan;
}

export class UnitFetcher<T extends Buffer> {
  readonly #format: UnitFormat<T>;
  readonly #blob: BlobSource;
  readonly #queue: FetchQueue;
  readonly #kept: LRUCache<number, T>;
  readonly #inflight = new Map<number, Promise<T>>();
  /** Units fetched (or being fetched) ahead that no read has asked for yet, and why. */
  readonly #aheadOf = new Map<number, FetchPriority>();
  readonly #stats: FetchStats;
  /** This layer's own figures (the shared ones sum every layer). */
  readonly layerStats = new FetchStats();
  readonly #align: number;
  /** Units verified at least once (and so in the node's cache, unless evicted since). */
  readonly #fetched: Uint8Array;
  #fetchedBytes = 0;
  /** Compressed bytes requested from the blob so far. */
  fetchedBytes = 0;

  constructor(format: UnitFormat<T>, blob: BlobSource, queue: FetchQueue, opts: UnitFetcherOptions = {}) {
    this.#format = format;
    this.#blob = blob;
    this.#queue = queue;
    this.#kept = new LRUCache<number, T>({ maxSize: Math.max(1, opts.keepBytes ?? 32 << 20), sizeCalculation: (b) => Math.max(1, b.length) });
    this.#stats = opts.stats ?? new FetchStats();
    this.#align = opts.alignBytes ?? 0;
    this.#fetched = new Uint8Array(format.count);
  }

  /** Compressed bytes of the units verified at least once, and of all units. */
  progress(): { fetchedBytes: number; totalBytes: number } {
    let total = 0;
    for (let i = 0; i < this.#format.count; i++) total += this.#size(i);
    return { fetchedBytes: this.#fetchedBytes, totalBytes: total };
  }

  /** Queues every unit not verified yet (the whole layer), in blob order. */
  aheadAll(req: Omit<AheadRequest, "ids">): void {
    const ids: number[] = [];
    for (let i = 0; i < this.#format.count; i++) if (!this.#fetched[i]) ids.push(i);
    this.ahead({ ...req, ids });
  }

  #size(id: number): number {
    const b = this.#format.bounds(id);
    return b.end - b.start;
  }

  /** Counts what a read found: fetched ahead, fetched by an earlier read, or missing. */
  #count(ids: readonly number[]): void {
    for (const id of new Set(ids)) {
      const why = this.#aheadOf.get(id);
      const n = this.#size(id);
      if (why) this.#aheadOf.delete(id);
      for (const st of [this.#stats, this.layerStats]) {
        if (why) {
          st.readHitBytes += n;
          st.aheadUsedBytes += n;
          st.aheadUsedBy[why] += n;
        } else if (this.held(id)) {
          st.readAgainBytes += n;
        } else {
          st.readMissBytes += n;
        }
      }
    }
  }

  #countAhead(id: number, why: FetchPriority): void {
    this.#aheadOf.set(id, why);
    this.#stats.aheadBytes[why] += this.#size(id);
    this.layerStats.aheadBytes[why] += this.#size(id);
  }

  /** Whether unit `id` is in memory or being fetched. */
  held(id: number): boolean {
    return this.#kept.has(id) || this.#inflight.has(id);
  }

  /** The verified units `ids`, in order: kept, joined in flight, or fetched now (adjacent ones in one request). */
  get(ids: readonly number[]): Promise<T>[] {
    this.#count(ids);
    const missing = [...new Set(ids.filter((id) => !this.held(id)))].sort((a, b) => a - b);
    // #start tracks each unit in #inflight (failures are reported to whoever awaits it)
    for (const run of adjacentRuns(missing, (i) => this.#format.bounds(i), Infinity)) {
      this.#stats.missFetches++;
      this.layerStats.missFetches++;
      void this.#start(this.#aligned(run), true);
    }
    return ids.map((id) => {
      const kept = this.#kept.get(id);
      return kept ? Promise.resolve(kept) : (this.#inflight.get(id) as Promise<T>);
    });
  }

  /**
   * Queues fetches of units nobody waits for yet, as jobs of the fetch queue:
   * runs of adjacent units, the most useful first. Each job looks again when
   * it starts and fetches only what is still missing.
   */
  ahead(req: AheadRequest): void {
    const todo = req.ids.filter((id) => !this.held(id));
    if (todo.length === 0) return;
    const bounds = (i: number): { start: number; end: number } => this.#format.bounds(i);
    const jobs: FetchJob[] = rankedRuns(todo, bounds, req.maxRequestBytes).map((run) => {
      const left = (): number[] => run.filter((id) => !this.held(id));
      return {
        priority: req.priority,
        ...(req.plan ? { plan: req.plan } : {}),
        pendingBytes: () => left().reduce((n, id) => n + bounds(id).end - bounds(id).start, 0),
        run: async () => {
          const ids = left();
          for (const id of ids) this.#countAhead(id, req.priority);
          const fetches = adjacentRuns(ids, bounds, Infinity).flatMap((run) => this.#start(run, false));
          await Promise.allSettled(fetches);
        },
      };
    });
    this.#queue.submit(jobs);
  }

  /** A read's run of units, with the whole units around it within its aligned blocks that nobody holds. */
  #aligned(run: number[]): number[] {
    const a = this.#align;
    if (a <= 0) return run;
    const f = this.#format;
    const lo = Math.floor(f.bounds(run[0] as number).start / a) * a;
    const hi = Math.ceil(f.bounds(run[run.length - 1] as number).end / a) * a;
    const before: number[] = [];
    for (let i = (run[0] as number) - 1; i >= 0 && f.bounds(i).start >= lo && !this.held(i); i--) before.unshift(i);
    const after: number[] = [];
    for (let i = (run[run.length - 1] as number) + 1; i < f.count && f.bounds(i).end <= hi && !this.held(i); i++) after.push(i);
    // bytes nobody asked for: counted as read-ahead, so precision stays honest
    for (const id of [...before, ...after]) this.#countAhead(id, "speculative");
    return [...before, ...run, ...after];
  }

  /** Fetches adjacent units `ids` in one request; each is in flight until it settles. */
  #start(ids: number[], demand: boolean): Promise<T>[] {
    const batch = demand ? this.#queue.demand(() => this.#fetch(ids)) : this.#fetch(ids);
    return ids.map((id, k) => {
      const p = batch.then((items) => {
        const item = items[k] as T | LayerVerificationError;
        if (item instanceof LayerVerificationError) throw item;
        this.#kept.set(id, item);
        if (!this.#fetched[id]) {
          this.#fetched[id] = 1;
          this.#fetchedBytes += this.#size(id);
        }
        return item;
      });
      const settled = p.finally(() => {
        if (this.#inflight.get(id) === settled) this.#inflight.delete(id);
      });
      settled.catch(() => this.#aheadOf.delete(id)); // a failed fetch ahead bought nothing
      settled.catch(() => undefined); // the reader awaiting it reports the failure
      this.#inflight.set(id, settled);
      return settled;
    });
  }

  /**
   * Units first..last in one read, each verified on its own. Bytes that fail
   * from a source that may do better on a second read (a spoiled cache file,
   * a peer) are read once more: from the registry, whose bytes are final.
   */
  async #fetch(ids: number[]): Promise<(T | LayerVerificationError)[]> {
    const f = this.#format;
    const start = f.bounds(ids[0] as number).start;
    const end = Math.max(...ids.map((id) => f.bounds(id).end));
    const first = await this.#read(ids, start, end);
    if (!first.some((x) => x instanceof LayerVerificationError) || !(await this.#blob.rejected?.(start, end - start))) return first;
    return this.#read(ids, start, end);
  }

  async #read(ids: number[], start: number, end: number): Promise<(T | LayerVerificationError)[]> {
    const f = this.#format;
    let data: Buffer;
    try {
      data = await this.#blob.read(start, end - start);
    } catch (err) {
      throw new UnavailableError(`layer ${f.digest}: fetching bytes ${start}-${end}`, { cause: err });
    }
    this.fetchedBytes += end - start;
    if (data.length < end - start) throw new UnavailableError(`layer ${f.digest}: short read at ${start}: ${data.length} of ${end - start}`);
    return ids.map((id) => {
      const b = f.bounds(id);
      const bytes = data.subarray(b.start - start, b.end - start);
      try {
        const out = f.verify(id, bytes);
        if (f.cacheable?.(id) ?? true) this.#blob.verified?.(b.start, bytes);
        return out;
      } catch (err) {
        if (err instanceof LayerVerificationError) return err;
        throw err;
      }
    });
  }
}
