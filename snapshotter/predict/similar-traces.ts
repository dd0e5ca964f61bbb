// Which past traces speak for a workload, and how loudly: every predictor that
// borrows history from similar workloads ranks traces the same way.
import { similarity, type WorkloadInput } from "../trace/workload.js";
import type { History, TraceSummary } from "./predictor.js";

export interface WeightedTrace {
  trace: TraceSummary;
  /** similarity() of the query's workload to the trace's, 0 < weight <= 1. */
  weight: number;
}

/**
 * Traces of `history` with similarity > 0 to `workload`, most similar first,
 * newest first among equals. Similarity weighs shared layers by the bytes the
 * trace read from them; a trace that read nothing (a warm page cache hides
 * reads, never opens) would then share nothing with anyone, so its layers
 * count alike instead.
 */
export function rankSimilar(history: History, workload: WorkloadInput & { signature?: string }, k = Infinity): WeightedTrace[] {
  const out: (WeightedTrace & { shared: number })[] = [];
  const mine = new Set(workload.layers);
  for (const trace of history.traces) {
    let read = 0;
    for (const n of trace.bytesByLayer.values()) read += n;
    const weight = similarity(workload, trace.workload, read > 0 ? trace.bytesByLayer : undefined);
    if (weight > 0) out.push({ trace, weight, shared: trace.workload.layers.filter((l) => mine.has(l)).length });
  }
  // for equal weights (a run that read only a shared base layer ties with one
  // of the very image), the one sharing more layers, then the later started
  out.sort((a, b) => b.weight - a.weight || b.shared - a.shared || b.trace.started - a.trace.started);
  return out.slice(0, k).map(({ trace, weight }) => ({ trace, weight }));
}

/** Workloads remembered per history by the memos below. */
export const CACHED_WORKLOADS = 32;

/** What identifies a query's workload for memoising what is derived from it. */
export function workloadKey(workload: WorkloadInput & { signature?: string }): string {
  const { signature, manifest, layers, args, cwd, env } = workload;
  return JSON.stringify([signature, manifest, layers, args, cwd, env]);
}

/** A bounded map from workload to something derived from it (oldest dropped first). */
export class WorkloadMemo<T> {
  readonly #map = new Map<string, T>();

  get(workload: WorkloadInput & { signature?: string }, make: () => T): T {
    const key = workloadKey(workload);
    let v = this.#map.get(key);
    if (v === undefined) {
      v = make();
      if (this.#map.size >= CACHED_WORKLOADS) this.#map.delete(this.#map.keys().next().value as string);
      this.#map.set(key, v);
    }
    return v;
  }
}

/**
 * rankSimilar, remembered per workload for one history: a container asks
 * again after every file it opens, and ranking every trace each time would
 * cost more than the prediction.
 */
export class SimilarTraces {
  readonly #memo = new WorkloadMemo<WeightedTrace[]>();

  constructor(readonly history: History) {}

  rank(workload: WorkloadInput & { signature?: string }): readonly WeightedTrace[] {
    return this.#memo.get(workload, () => rankSimilar(this.history, workload));
  }
}
