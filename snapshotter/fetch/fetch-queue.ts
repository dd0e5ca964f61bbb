// How fetches of layer bytes share the link to the registry. A read that
// waits for bytes fetches them at once ("demand") and never queues behind
// anything; fetches nobody waits for yet (predicted files, read-ahead) are
// jobs, run in priority order as the queue sees fit. The queue itself is
// prefetch/scheduler.ts; layer formats see only this interface.

/** Why bytes are fetched before anybody reads them, most urgent first. */
export type FetchPriority = "soon" | "later" | "speculative";

/** A budget and a kill switch shared by the jobs of one prefetch (a pull, a container start). */
export interface FetchPlan {
  readonly label: string;
  /** Compressed bytes the plan may still fetch. */
  readonly bytesLeft: number;
  readonly cancelled: boolean;
  /** Drops the plan's jobs that have not started. */
  cancel(): void;
}

export interface FetchJob {
  readonly priority: FetchPriority;
  /** The plan it belongs to; none for read-ahead, which is bounded by the queue. */
  readonly plan?: FetchPlan;
  /**
   * Where it comes in its plan's predicted order: among queued jobs of one
   * priority, lower ranks run first (none: after every ranked one). Layers
   * open one after another; ranks keep a layer that opened late from
   * queueing its first files behind another's later ones.
   */
  readonly rank?: number;
  /** Compressed bytes the job would fetch if it started now: 0 when another fetch got them first. */
  pendingBytes(): number;
  /** Fetches and verifies; failures are the reader's to report when it asks for the bytes. */
  run(): Promise<void>;
}

export interface FetchQueue {
  /** Runs a fetch a read is waiting for: now, never behind queued work. */
  demand<T>(fetch: () => Promise<T>): Promise<T>;
  /** Queues jobs, most useful first. */
  submit(jobs: readonly FetchJob[]): void;
}

/** Fetches only what reads ask for: for blobs on local disk, and tests. */
export const DEMAND_ONLY: FetchQueue = {
  demand: (fetch) => fetch(),
  submit: () => undefined,
};
