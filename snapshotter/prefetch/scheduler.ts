// One fetch scheduler per augur (built in daemon.ts): every fetch of layer
// bytes that nobody waits for yet goes through it, whatever the format.
//
//   demand       a read waits for it: runs at once, never queued
//   soon, later  predicted files (prefetcher.ts), in predicted order (a job's
//                rank: its place in its plan; unranked ones last)
//   speculative  read-ahead beside a miss (newest first: the workload has
//                moved on from where older suggestions were aimed)
//
// Queued jobs run a few at a time, fewer while demand fetches are in flight,
// so reads keep most of the link. Read-ahead waits while predicted jobs run:
// with a prediction, it mostly guesses worse at what they fetch anyway. A job belongs to a plan (one pull, one
// container start) with a byte budget and can be cancelled with it.
import type { FetchJob, FetchPlan, FetchPriority, FetchQueue } from "../fetch/fetch-queue.js";

export interface SchedulerOptions {
  /** Queued jobs running at once when no read waits (default 4). */
  concurrency?: number;
  /** Queued jobs running at once while reads wait for fetches of their own (default 2). */
  concurrencyWhileDemand?: number;
  /** Speculative jobs kept waiting; the oldest are dropped beyond it (default 32). */
  speculativeQueue?: number;
}

export interface SchedulerStats {
  queued: Record<FetchPriority, number>;
  running: number;
  demandInFlight: number;
  demandFetches: number;
  /** Compressed bytes fetched by jobs, per priority (estimates taken when each job started). */
  startedBytes: Record<FetchPriority, number>;
  /** Jobs dropped: over their plan's budget, cancelled, or pushed out of the speculative queue. */
  dropped: number;
}

const PRIORITIES: readonly FetchPriority[] = ["soon", "later", "speculative"];

class Plan implements FetchPlan {
  spent = 0;
  cancelled = false;
  constructor(
    readonly label: string,
    readonly budget: number,
  ) {}
  get bytesLeft(): number {
    return Math.max(0, this.budget - this.spent);
  }
  cancel(): void {
    this.cancelled = true;
  }
}

export class FetchScheduler implements FetchQueue {
  readonly concurrency: number;
  readonly concurrencyWhileDemand: number;
  readonly speculativeQueue: number;
  readonly #fifo: Record<"soon" | "later", FetchJob[]> = { soon: [], later: [] };
  /** Speculative batches, oldest first; each batch's jobs in the order they should run. */
  readonly #speculative: FetchJob[][] = [];
  #speculativeQueued = 0;
  #running = 0;
  /** Predicted (soon, later) jobs running: read-ahead waits for them, it mostly guesses what they fetch anyway. */
  #runningPredicted = 0;
  #demand = 0;
  #demandFetches = 0;
  #dropped = 0;
  readonly #startedBytes: Record<FetchPriority, number> = { soon: 0, later: 0, speculative: 0 };
  #idle: (() => void)[] = [];

  constructor(opts: SchedulerOptions = {}) {
    this.concurrency = Math.max(1, opts.concurrency ?? 4);
    this.concurrencyWhileDemand = Math.max(1, Math.min(this.concurrency, opts.concurrencyWhileDemand ?? 2));
    this.speculativeQueue = Math.max(1, opts.speculativeQueue ?? 32);
  }

  /** A new plan: its jobs together fetch at most `budgetBytes`. */
  plan(label: string, budgetBytes: number): FetchPlan {
    return new Plan(label, budgetBytes);
  }

  async demand<T>(fetch: () => Promise<T>): Promise<T> {
    this.#demand++;
    this.#demandFetches++;
    try {
      return await fetch();
    } finally {
      this.#demand--;
      this.#pump();
    }
  }

  submit(jobs: readonly FetchJob[]): void {
    const spec = jobs.filter((j) => j.priority === "speculative");
    for (const j of jobs) if (j.priority !== "speculative") queueByRank(this.#fifo[j.priority], j);
    if (spec.length) {
      this.#speculative.push([...spec]);
      this.#speculativeQueued += spec.length;
      while (this.#speculativeQueued > this.speculativeQueue) {
        const oldest = this.#speculative[0] as FetchJob[];
        oldest.pop();
        this.#speculativeQueued--;
        this.#dropped++;
        if (oldest.length === 0) this.#speculative.shift();
      }
    }
    this.#pump();
  }

  /** Jobs queued or running. */
  get pending(): number {
    return this.#fifo.soon.length + this.#fifo.later.length + this.#speculativeQueued + this.#running;
  }

  /** Resolves once nothing is queued or running. */
  idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  stats(): SchedulerStats {
    return {
      queued: { soon: this.#fifo.soon.length, later: this.#fifo.later.length, speculative: this.#speculativeQueued },
      running: this.#running,
      demandInFlight: this.#demand,
      demandFetches: this.#demandFetches,
      startedBytes: { ...this.#startedBytes },
      dropped: this.#dropped,
    };
  }

  #pump(): void {
    for (;;) {
      const limit = this.#demand > 0 ? this.concurrencyWhileDemand : this.concurrency;
      if (this.#running >= limit) return;
      const job = this.#next();
      if (!job) break;
      const bytes = job.pendingBytes();
      if (bytes === 0) continue; // fetched meanwhile
      const plan = job.plan as Plan | undefined;
      if (plan && (plan.cancelled || plan.spent + bytes > plan.budget)) {
        this.#dropped++;
        continue;
      }
      if (plan) plan.spent += bytes;
      this.#startedBytes[job.priority] += bytes;
      this.#running++;
      const predicted = job.priority !== "speculative";
      if (predicted) this.#runningPredicted++;
      void job
        .run()
        .catch(() => undefined)
        .finally(() => {
          this.#running--;
          if (predicted) this.#runningPredicted--;
          this.#pump();
        });
    }
    if (this.pending === 0) for (const resolve of this.#idle.splice(0)) resolve();
  }

  /** The next job: the most urgent class first; within speculative, the newest batch. */
  #next(): FetchJob | undefined {
    for (const p of PRIORITIES) {
      if (p !== "speculative") {
        const job = this.#fifo[p].shift();
        if (job) return job;
        continue;
      }
      if (this.#runningPredicted > 0) return undefined;
      const batch = this.#speculative[this.#speculative.length - 1];
      const job = batch?.shift();
      if (!batch || !job) return undefined;
      if (batch.length === 0) this.#speculative.pop();
      this.#speculativeQueued--;
      return job;
    }
    return undefined;
  }
}

/**
 * Puts `job` after every queued job of a lower or equal rank; an unranked job
 * (a whole layer asked for) ranks after every ranked one. Jobs of one rank
 * stay in the order queued.
 */
function queueByRank(queue: FetchJob[], job: FetchJob): void {
  const rank = job.rank ?? Infinity;
  let at = queue.length;
  while (at > 0 && ((queue[at - 1] as FetchJob).rank ?? Infinity) > rank) at--;
  queue.splice(at, 0, job);
}
