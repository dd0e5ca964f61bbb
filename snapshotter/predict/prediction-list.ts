// The rules every predictor's answer obeys, in one place: only files of the
// query's layers, none already accessed, each once, at most `limit` of them,
// each with the bytes the workload is expected to read of it.
import { fileId, type FileKey, type History, type PredictQuery, type PredictedFile, type Range } from "./predictor.js";

export class PredictionList {
  readonly #layers: ReadonlySet<string>;
  readonly #taken: Set<string>;
  readonly #out: PredictedFile[] = [];

  constructor(
    readonly query: PredictQuery,
    /** Where ranges come from when a caller gives none: the file's footprint. */
    readonly history: History | undefined,
  ) {
    this.#layers = new Set(query.workload.layers);
    this.#taken = new Set(query.accessed.map(fileId));
  }

  get full(): boolean {
    return this.#out.length >= this.query.limit;
  }

  /** Whether `file` may still be added (in the query's layers, not accessed, not yet added). */
  open(file: FileKey): boolean {
    return this.#layers.has(file.layer) && !this.#taken.has(fileId(file));
  }

  /** Adds `file` if the rules allow it; returns whether there is room for more. */
  offer(file: FileKey, confidence: number, ranges?: readonly Range[]): boolean {
    if (this.full) return false;
    if (!this.open(file)) return true;
    this.#taken.add(fileId(file));
    const r = ranges ?? this.history?.footprint(file) ?? [];
    this.#out.push({ layer: file.layer, path: file.path, ranges: r, confidence: Math.max(0, Math.min(1, confidence)) });
    return !this.full;
  }

  result(): PredictedFile[] {
    return this.#out;
  }
}
