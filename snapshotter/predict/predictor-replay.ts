// "replay": the container will do what the most similar past container did.
// Takes the file sequence of the one most similar trace, finds where the
// current container is in it, and predicts what that trace touched next.
import { fileId, registerPredictor, type History, type PredictQuery, type PredictedFile, type Predictor, type TraceSummary } from "./predictor.js";
import { PredictionList } from "./prediction-list.js";
import { SimilarTraces } from "./similar-traces.js";

/** How many of the latest accessed files (that the replayed trace also touched) place the container in it. */
export const ALIGN_WINDOW = 5;
/** Confidence factor for files the replayed trace touched before the aligned position that are still unaccessed: skipped, or yet to come out of order. */
export const SKIPPED_FACTOR = 0.5;

/**
 * Where in `order` (position by file id) the container is: the median
 * position of the last ALIGN_WINDOW accessed files `order` has, so one file
 * read far out of its usual place does not jump the replay ahead. -1 when
 * nothing accessed is in it (the container is at the start).
 */
export function alignedPosition(order: ReadonlyMap<string, number>, accessed: PredictQuery["accessed"]): number {
  const seen: number[] = [];
  for (let i = accessed.length - 1; i >= 0 && seen.length < ALIGN_WINDOW; i--) {
    const at = order.get(fileId(accessed[i] as PredictQuery["accessed"][number]));
    if (at !== undefined) seen.push(at);
  }
  if (seen.length === 0) return -1;
  seen.sort((a, b) => a - b);
  return seen[(seen.length - 1) >> 1] as number;
}

export class ReplayPredictor implements Predictor {
  readonly name = "replay";
  #history: History | undefined;
  #similar: SimilarTraces | undefined;
  readonly #order = new Map<TraceSummary, Map<string, number>>();

  async train(history: History): Promise<void> {
    this.#history = history;
    this.#similar = new SimilarTraces(history);
    this.#order.clear();
    for (const t of history.traces) this.#order.set(t, new Map(t.files.map((f, i) => [fileId(f), i])));
  }

  predict(query: PredictQuery): PredictedFile[] {
    const list = new PredictionList(query, this.#history);
    const best = this.#similar?.rank(query.workload)[0];
    if (!best) return [];
    const { trace, weight } = best;
    const at = alignedPosition(this.#order.get(trace) as Map<string, number>, query.accessed);
    const files = trace.files;
    for (let i = at + 1; i < files.length; i++) if (!list.offer(files[i] as TraceSummary["files"][number], weight)) return list.result();
    for (let i = 0; i <= at; i++) if (!list.offer(files[i] as TraceSummary["files"][number], weight * SKIPPED_FACTOR)) break;
    return list.result();
  }
}

registerPredictor("replay", () => new ReplayPredictor());
