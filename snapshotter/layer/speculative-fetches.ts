// Fetches nobody waits for yet: the bytes after a read miss, the rest of a file
// a program has started to read (ELF objects are paged in out of order), and
// the other small files of a directory it has started to read from.
// A start-up reads one file after another, each miss a round trip to the
// registry with the link mostly idle in between (docs/benchmarks.md: 79
// sequential requests, the link busy a third of the time), so these run in
// separate requests beside the reads that wait. Those never queue behind them:
// a read that needs bytes not yet being fetched fetches them itself, and one
// that needs bytes in flight joins that fetch.
//
// Few run at once, so they take spare bandwidth rather than the waiting reads'.
// The newest start first and, when misses come faster than they drain, the
// oldest waiting ones are dropped: the program has moved on from where they
// were aimed.

/**
 * After a miss, the units that follow it in the blob, up to this many
 * compressed bytes: files of one directory sit together in the blob and are
 * read together (an interpreter importing modules).
 */
export const READ_AHEAD_BYTES = 512 << 10;
/**
 * A file's first read also fetches the rest of it, up to this many compressed
 * bytes: programs read most of what they open, and ELF objects are paged in
 * out of order (python3's start-up faulted its 6.7 MB binary in ten scattered
 * reads, each a round trip).
 */
export const FILE_AHEAD_BYTES = 8 << 20;
/**
 * The first read of a small file in a directory also fetches the directory's
 * other small files, nearest in layer order first, up to this many compressed
 * bytes: an interpreter imports module after module from one directory
 * (python3's start-up missed 13 times in one `__pycache__`), while binaries
 * and libraries beside each other are mostly not used together.
 */
export const DIR_AHEAD_BYTES = 2 << 20;
/** What counts as a small file for DIR_AHEAD_BYTES. */
export const SMALL_FILE_BYTES = 256 << 10;
/** Compressed bytes of one speculative request at most, so a read joining it waits little longer than for its own unit. */
export const SPECULATIVE_REQUEST_BYTES = 512 << 10;

/** Speculative fetches in flight at once, across every layer of the process. */
export const SPECULATIVE_CONCURRENCY = 2;
/** Speculative fetches waiting for a slot; those of the oldest batches are dropped first. */
export const SPECULATIVE_QUEUE = 32;

export type SpeculativeTask = () => Promise<void>;

export class SpeculativeFetches {
  /** Batches, oldest first; each batch's tasks in the order they should run. */
  readonly #batches: SpeculativeTask[][] = [];
  #queued = 0;
  #running = 0;
  #idle: (() => void)[] = [];

  constructor(
    readonly concurrency = SPECULATIVE_CONCURRENCY,
    readonly maxQueued = SPECULATIVE_QUEUE,
  ) {}

  /**
   * Queues the fetches one read suggests, most useful first. The newest batch
   * runs before older ones. Each task decides when it starts what is still
   * worth fetching; its failure is ignored (a reader needing those bytes
   * fetches them itself and reports).
   */
  add(batch: SpeculativeTask[]): void {
    if (batch.length === 0) return;
    this.#batches.push([...batch]);
    this.#queued += batch.length;
    while (this.#queued > this.maxQueued) {
      const oldest = this.#batches[0] as SpeculativeTask[];
      oldest.pop();
      this.#queued--;
      if (oldest.length === 0) this.#batches.shift();
    }
    this.#next();
  }

  /** Tasks queued or running. */
  get pending(): number {
    return this.#queued + this.#running;
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  #next(): void {
    while (this.#running < this.concurrency) {
      const batch = this.#batches[this.#batches.length - 1];
      const task = batch?.shift();
      if (!batch || !task) return;
      if (batch.length === 0) this.#batches.pop();
      this.#queued--;
      this.#running++;
      void task()
        .catch(() => undefined)
        .finally(() => {
          this.#running--;
          this.#next();
          if (this.pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
        });
    }
  }
}

/** The process-wide queue layers share unless given their own. */
export const sharedSpeculativeFetches = new SpeculativeFetches();

/**
 * Orders `ids` (unit ids, most useful first) into requests: runs of adjacent
 * units, each at most `maxBytes` long, ordered by their most useful member.
 */
export function speculativeRequests(ids: readonly number[], bounds: (id: number) => { start: number; end: number }, maxBytes: number): number[][] {
  const rank = new Map<number, number>();
  ids.forEach((id, k) => {
    if (!rank.has(id)) rank.set(id, k);
  });
  const runs = adjacentRuns([...rank.keys()].sort((a, b) => a - b), bounds, maxBytes);
  const best = (run: number[]): number => Math.min(...run.map((id) => rank.get(id) as number));
  return runs.sort((a, b) => best(a) - best(b));
}

/**
 * Splits sorted unit ids into runs of adjacent units, each at most `maxBytes`
 * long (a unit longer than that runs alone), so no waiting read joins a fetch
 * much longer than the unit it needs.
 */
export function adjacentRuns(ids: readonly number[], bounds: (id: number) => { start: number; end: number }, maxBytes: number): number[][] {
  const runs: number[][] = [];
  let run: number[] = [];
  for (const id of ids) {
    const prev = run[run.length - 1];
    const b = bounds(id);
    // gzip spans share the byte their boundary bit falls in: touching or overlapping is adjacent
    const adjacent = prev !== undefined && id === prev + 1 && b.start <= bounds(prev).end;
    if (run.length && (!adjacent || b.end - bounds(run[0] as number).start > maxBytes)) {
      runs.push(run);
      run = [];
    }
    run.push(id);
  }
  if (run.length) runs.push(run);
  return runs;
}
