// "frequency": what most similar containers touched, the most common first.
// Each of the k most similar traces votes for the files it touched with its
// similarity; files are ranked by votes, and among equals by where they were
// usually touched, so the answer also comes roughly in start-up order.
import { fileId, registerPredictor, type FileKey, type History, type PredictQuery, type PredictedFile, type Predictor } from "./predictor.js";
import { PredictionList } from "./prediction-list.js";
import { rankSimilar, WorkloadMemo } from "./similar-traces.js";

/** Traces that vote: the most similar few; further ones are mostly other workloads' noise. */
export const FREQUENCY_TRACES = 8;

export interface ScoredFile {
  file: FileKey;
  /** Sum of the weights of the voting traces that touched the file. */
  score: number;
  /** score / the sum of all voting traces' weights: the weighted share of similar traces that touched it. */
  confidence: number;
  /** Weighted mean of its first-touch index in the traces that touched it. */
  position: number;
}

/** Files of the k most similar traces to `query`, best first. */
export function scoreFiles(history: History, query: PredictQuery, k: number): ScoredFile[] {
  const voters = rankSimilar(history, query.workload, k);
  const total = voters.reduce((n, v) => n + v.weight, 0);
  const byId = new Map<string, { file: FileKey; score: number; posSum: number }>();
  for (const { trace, weight } of voters) {
    trace.files.forEach((f, i) => {
      const id = fileId(f);
      let s = byId.get(id);
      if (!s) byId.set(id, (s = { file: { layer: f.layer, path: f.path }, score: 0, posSum: 0 }));
      s.score += weight;
      s.posSum += weight * i;
    });
  }
  return [...byId.values()]
    .map((s) => ({ file: s.file, score: s.score, confidence: s.score / total, position: s.posSum / s.score }))
    .sort((a, b) => b.score - a.score || a.position - b.position);
}

export class FrequencyPredictor implements Predictor {
  readonly name = "frequency";
  #history: History | undefined;
  #memo = new WorkloadMemo<ScoredFile[]>();

  constructor(readonly k = FREQUENCY_TRACES) {}

  async train(history: History): Promise<void> {
    this.#history = history;
    this.#memo = new WorkloadMemo<ScoredFile[]>();
  }

  predict(query: PredictQuery): PredictedFile[] {
    const history = this.#history;
    if (!history) return [];
    const scored = this.#memo.get(query.workload, () => scoreFiles(history, query, this.k));
    const list = new PredictionList(query, history);
    for (const s of scored) if (!list.offer(s.file, s.confidence)) break;
    return list.result();
  }
}

registerPredictor("frequency", () => new FrequencyPredictor());
