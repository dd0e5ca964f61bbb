// The one question every predictor answers: given this workload and the files
// it has opened so far, which files of its layers will it read next, in what
// order, with what confidence. Predictors learn from a History (the node's
// traces, summarised in history.ts) and are registered by name, so the
// prefetcher, `augur predict eval` and the config name them the same way.
import { InvalidArgumentError } from "../errdefs/errors.js";
import type { Workload, WorkloadInput } from "../trace/workload.js";

/** Bytes [offset, offset+length) of a file (uncompressed, as the workload reads it). */
export interface Range {
  offset: number;
  length: number;
}

/** A regular file of one layer. */
export interface FileKey {
  layer: string;
  path: string;
}

export interface PredictedFile extends FileKey {
  /** The parts of the file the workload is expected to read (its footprint). */
  ranges: readonly Range[];
  /** 0 to 1: how sure the predictor is that the file will be read. */
  confidence: number;
}

/** One file a trace opened (or read, when the open came before the trace began), at its first access. */
export interface TracedFile extends FileKey {
  /** Milliseconds since the trace began. */
  t: number;
  /** File size when the trace saw it opened. */
  size?: number;
}

/** What the predictors learn from of one trace. */
export interface TraceSummary {
  id: string;
  workload: Workload;
  /** Wall-clock start, ms since the epoch: later traces are newer evidence. */
  started: number;
  /** Files in the order the container first touched them (each once). */
  files: readonly TracedFile[];
  /** Bytes this trace read from each layer (reads that reached augur). */
  bytesByLayer: ReadonlyMap<string, number>;
}

/** A layer's regular files in layer order (its tar, or its eStargz TOC), for locality heuristics. */
export interface CatalogFile {
  path: string;
  size: number;
}

export interface LayerCatalog {
  /** The layer's regular files in layer order; undefined when the layer is not known here. */
  files(layer: string): readonly CatalogFile[] | undefined;
}

export interface History {
  readonly traces: readonly TraceSummary[];
  /**
   * The byte ranges of a file that workloads read: the union of the reads any
   * trace saw. The kernel's page cache hides the reads of a second container
   * on a warm node but never its opens, so this is kept per file, not per
   * trace. A file no trace saw read gets a default (history.ts).
   */
  footprint(file: FileKey): readonly Range[];
  /** Layer listings, when the node has the layers' indexes or TOCs. */
  readonly catalog: LayerCatalog | undefined;
}

export interface PredictQuery {
  /** What is known of the workload: its layers always; args, manifest and signature once containerd has said. */
  workload: WorkloadInput & { signature?: string };
  /** Files opened so far, in order (empty before the container starts). */
  accessed: readonly FileKey[];
  /** At most this many predictions. */
  limit: number;
}

export interface Predictor {
  readonly name: string;
  /** Learns (again) from `history`; the last call's history is what `predict` uses. */
  train(history: History): Promise<void>;
  /**
   * Files of the query's layers the workload will read next, most likely
   * first, none of them already accessed. Cheap: it runs on the prefetch path.
   */
  predict(query: PredictQuery): PredictedFile[];
  /**
   * New predictions one call makes at most, for a predictor whose every
   * prediction costs real time (the GRU rolls its network out one file at a
   * time): a call for more answers fewer than its limit, and the caller asks
   * again with the same query and a larger limit to go on (the answer
   * extends the previous one). Absent: one call gives all it has, cheaply.
   */
  readonly perCall?: number;
  /** Bytes of what was learned (a network's weights), for evaluations; absent when there is no model to speak of. */
  modelBytes?(): number;
}

export interface PredictorOptions {
  /** Where a predictor may keep what it learned (a model file); absent in evaluations. */
  stateDir?: string;
  /** Expensive training goes off the calling thread (augur serve: the FUSE handlers run on it). */
  background?: boolean;
}

export type PredictorFactory = (opts: PredictorOptions) => Predictor;

const registry = new Map<string, PredictorFactory>();

export function registerPredictor(name: string, factory: PredictorFactory): void {
  if (registry.has(name)) throw new InvalidArgumentError(`predictor ${JSON.stringify(name)} is registered twice`);
  registry.set(name, factory);
}

export function predictorNames(): string[] {
  return [...registry.keys()];
}

export function createPredictor(name: string, opts: PredictorOptions = {}): Predictor {
  const factory = registry.get(name);
  if (!factory) throw new InvalidArgumentError(`unknown predictor ${JSON.stringify(name)} (known: ${predictorNames().join(", ")})`);
  return factory(opts);
}

export const fileId = (f: FileKey): string => `${f.layer}\0${f.path}`;
