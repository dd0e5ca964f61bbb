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
import type { BlobRange, BlobSource } from "./blob-source.js";
import type { FetchJob, FetchPlan, FetchPriority, FetchQueue } from "./fetch-queue.js";
import { FetchStats } from "./fetch-stats.js";
import { adjacentRuns, disjointRuns, packedRuns, rankedRuns } from "./unit-runs.js";
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
  /** Where they come in their plan's predicted order (FetchJob.rank). */
  rank?: number;
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

  /** Units fetched ahead that a read used without asking for them (it found them decoded): counted as used, once. */
  used(ids: readonly number[]): void {
    const ahead = ids.filter((id) => this.#aheadOf.has(id));
    if (ahead.length) this.#count(ahead);
  }

  /** Unit `id` if it is in memory now (verified), without fetching or counting a read. */
  kept(id: number): T | undefined {
    return this.#kept.peek(id);
  }

  /**
   * The verified units `ids`, in order: kept, joined in flight, or fetched
   * now (adjacent ones as one range, every range of the read in one request
   * where the blob takes several at once).
   */
  get(ids: readonly number[]): Promise<T>[] {
    this.#count(ids);
    const missing = [...new Set(ids.filter((id) => !this.held(id)))].sort((a, b) => a - b);
    // #start tracks each unit in #inflight (failures are reported to whoever awaits it)
    const bounds = (i: number): { start: number; end: number } => this.#format.bounds(i);
    // aligned runs may meet or overlap: joined again, so no unit is asked for twice
    const aligned = adjacentRuns(missing, bounds, Infinity).flatMap((run) => this.#aligned(run));
    const runs = adjacentRuns([...new Set(aligned)].sort((a, b) => a - b), bounds, Infinity);
    if (runs.length) {
      this.#stats.missFetches += runs.length;
      this.layerStats.missFetches += runs.length;
      void this.#start(runs, true);
    }
    return ids.map((id) => {
      const kept = this.#kept.get(id);
      return kept ? Promise.resolve(kept) : (this.#inflight.get(id) as Promise<T>);
    });
  }

  /**
   * Queues fetches of units nobody waits for yet, as jobs of the fetch queue:
   * runs of adjacent units, the most useful first, each job one request of
   * up to `maxRequestBytes` (several runs in it where the blob takes several
   * ranges at once: a run of a predicted file is often a single cell, and a
   * request per cell would spend the link on round trips). Each job looks
   * again when it starts and fetches only what is still missing.
   */
  ahead(req: AheadRequest): void {
    const todo = req.ids.filter((id) => !this.held(id));
    if (todo.length === 0) return;
    const bounds = (i: number): { start: number; end: number } => this.#format.bounds(i);
    const runs = rankedRuns(todo, bounds, req.maxRequestBytes);
    // packed only where they will go together: one by one, a job of many runs would be many requests at once
    const several = this.#blob.readRanges !== undefined && (this.#blob.takesSeveralRanges?.() ?? true);
    const requests = several ? packedRuns(runs, bounds, req.maxRequestBytes) : runs.map((run) => [run]);
    const jobs: FetchJob[] = requests.map((request) => {
      const left = (): number[][] => request.flatMap((run) => adjacentRuns(run.filter((id) => !this.held(id)), bounds, Infinity));
      return {
        priority: req.priority,
        ...(req.plan ? { plan: req.plan } : {}),
        ...(req.rank !== undefined ? { rank: req.rank } : {}),
        pendingBytes: () => left().flat().reduce((n, id) => n + bounds(id).end - bounds(id).start, 0),
        run: async () => {
          const runs = left();
          if (runs.length === 0) return;
          for (const id of runs.flat()) this.#countAhead(id, req.priority);
          await Promise.allSettled(this.#start(runs, false));
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

  /**
   * Fetches runs of adjacent units, all in one request where the blob takes
   * several ranges at once; each unit is in flight until it settles.
   */
  #start(runs: number[][], demand: boolean): Promise<T>[] {
    const batches = this.#fetchRuns(runs);
    if (demand) void this.#queue.demand(() => Promise.allSettled(batches));
    return runs.flatMap((ids, r) =>
      ids.map((id, k) => {
        const p = (batches[r] as Promise<(T | LayerVerificationError)[]>).then((items) => {
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
      }),
    );
  }

  /** One read per run (several in one request where the blob can), each run's units verified as its bytes arrive. */
  #fetchRuns(given: number[][]): Promise<(T | LayerVerificationError)[]>[] {
    const f = this.#format;
    const runs = this.#blob.readRanges && given.length > 1 ? disjointRuns(given, (i) => f.bounds(i)) : given;
    const ranges = runs.map((ids) => {
      const start = f.bounds(ids[0] as number).start;
      return { offset: start, length: Math.max(...ids.map((id) => f.bounds(id).end)) - start };
    });
    const reads = runs.length > 1 && this.#blob.readRanges ? this.#blob.readRanges(ranges) : ranges.map((r) => this.#blob.read(r.offset, r.length));
    const checked = runs.map((ids, k) => this.#checkRun(ids, ranges[k] as BlobRange, reads[k] as Promise<Buffer>));
    if (runs === given) return checked;
    // back in the caller's runs: each unit's item from the run it went in with
    const byUnit = new Map<number, { batch: Promise<(T | LayerVerificationError)[]>; k: number }>();
    runs.forEach((ids, r) => ids.forEach((id, k) => byUnit.set(id, { batch: checked[r] as Promise<(T | LayerVerificationError)[]>, k })));
    return given.map((ids) => Promise.all(ids.map((id) => {
      const { batch, k } = byUnit.get(id) as { batch: Promise<(T | LayerVerificationError)[]>; k: number };
      return batch.then((items) => items[k] as T | LayerVerificationError);
    })));
  }

  /**
   * A run's units, each verified on its own. Bytes that fail from a source
   * that may do better on a second read (a spoiled cache file, a peer) are
   * read once more: from the registry, whose bytes are final.
   */
  async #checkRun(ids: number[], range: BlobRange, read: Promise<Buffer>): Promise<(T | LayerVerificationError)[]> {
    const first = await this.#verify(ids, range, read);
    if (!first.some((x) => x instanceof LayerVerificationError) || !(await this.#blob.rejected?.(range.offset, range.length))) return first;
    return this.#verify(ids, range, this.#blob.read(range.offset, range.length));
  }

  async #verify(ids: number[], range: BlobRange, read: Promise<Buffer>): Promise<(T | LayerVerificationError)[]> {
    const f = this.#format;
    const { offset, length } = range;
    let data: Buffer;
    try {
      data = await read;
    } catch (err) {
      throw new UnavailableError(`layer ${f.digest}: fetching bytes ${offset}-${offset + length}`, { cause: err });
    }
    this.fetchedBytes += length;
    if (data.length < length) throw new UnavailableError(`layer ${f.digest}: short read at ${offset}: ${data.length} of ${length}`);
    const items = ids.map((id) => {
      const b = f.bounds(id);
      try {
        return f.verify(id, data.subarray(b.start - offset, b.end - offset));
      } catch (err) {
        if (err instanceof LayerVerificationError) return err;
        throw err;
      }
    });
    this.#keep(ids, items, offset, data);
    return items;
  }

  /** Hands the blob each stretch of adjacent verified, cacheable units as one piece: one cache file per stretch, not per unit. */
  #keep(ids: number[], items: readonly (T | LayerVerificationError)[], offset: number, data: Buffer): void {
    if (!this.#blob.verified) return;
    const f = this.#format;
    let from: number | undefined;
    let to = 0;
    const flush = (): void => {
      if (from !== undefined) this.#blob.verified?.(from, data.subarray(from - offset, to - offset));
      from = undefined;
    };
    ids.forEach((id, k) => {
      const b = f.bounds(id);
      if (items[k] instanceof LayerVerificationError || !(f.cacheable?.(id) ?? true)) return flush();
      if (from !== undefined && b.start > to) flush();
      from ??= b.start;
      to = Math.max(to, b.end);
    });
    flush();
  }
}
