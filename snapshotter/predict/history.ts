// Traces as the predictors see them: per trace, the files in the order the
// container first touched them; per file, the byte ranges any container was
// seen reading. Opens always reach augur; reads only when the kernel's page
// cache does not have the bytes, so the second container on a warm node
// shows its opens and few reads. Keeping footprints per file, from every
// trace, is what keeps that from distorting what is learned.
import type { Trace } from "../trace/trace-format.js";
import { makeWorkload, type Workload } from "../trace/workload.js";
import { fileId, type FileKey, type History, type LayerCatalog, type Range, type TraceSummary, type TracedFile } from "./predictor.js";

/** A file no trace saw read is assumed to cost its whole size up to this (then just its head). */
export const UNREAD_FILE_BYTES = 1 << 20;
/** What is assumed of a file larger than UNREAD_FILE_BYTES that no trace saw read: its first bytes, as a header check would. */
export const UNREAD_HEAD_BYTES = 128 << 10;

/** Merges ranges into sorted, non-overlapping ones. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = ranges.filter((r) => r.length > 0).sort((a, b) => a.offset - b.offset);
  const out: Range[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.offset <= last.offset + last.length) {
      last.length = Math.max(last.length, r.offset + r.length - last.offset);
    } else {
      out.push({ offset: r.offset, length: r.length });
    }
  }
  return out;
}

export const rangeBytes = (ranges: readonly Range[]): number => ranges.reduce((n, r) => n + r.length, 0);

/** The workload a trace ran, or (containerd could not say) one made of its layers alone. */
export function workloadOf(trace: Trace): Workload {
  return trace.workload ?? makeWorkload({ layers: trace.header.layers, args: [], cwd: "", env: {} });
}

/** What the predictors keep of one trace. */
export function summarize(trace: Trace): TraceSummary {
  const files: TracedFile[] = [];
  const seen = new Set<string>();
  const bytesByLayer = new Map<string, number>();
  for (const a of trace.accesses) {
    if (a.op === "read") bytesByLayer.set(a.layer, (bytesByLayer.get(a.layer) ?? 0) + (a.length ?? 0));
    if (a.op !== "open" && a.op !== "read") continue;
    const id = fileId(a);
    if (seen.has(id)) continue;
    seen.add(id);
    files.push({ layer: a.layer, path: a.path, t: a.t, ...(a.size !== undefined ? { size: a.size } : {}) });
  }
  return { id: trace.header.id, workload: workloadOf(trace), started: trace.header.started, files, bytesByLayer };
}

export class TraceHistory implements History {
  readonly traces: readonly TraceSummary[];
  readonly catalog: LayerCatalog | undefined;
  readonly #reads = new Map<string, Range[]>();
  readonly #sizes = new Map<string, number>();

  /** `traces` in any order; they are kept oldest first. */
  constructor(traces: readonly Trace[], catalog?: LayerCatalog) {
    const sorted = [...traces].sort((a, b) => a.header.started - b.header.started);
    this.traces = sorted.map(summarize);
    this.catalog = catalog;
    for (const t of sorted) {
      for (const a of t.accesses) {
        const id = fileId(a);
        if (a.op === "open" && a.size !== undefined) this.#sizes.set(id, a.size);
        if (a.op === "read" && a.length && a.offset !== undefined) {
          let list = this.#reads.get(id);
          if (!list) this.#reads.set(id, (list = []));
          list.push({ offset: a.offset, length: a.length });
        }
      }
    }
    for (const [id, list] of this.#reads) this.#reads.set(id, mergeRanges(list));
  }

  footprint(file: FileKey): readonly Range[] {
    const read = this.#reads.get(fileId(file));
    if (read) return read;
    const size = this.#sizes.get(fileId(file));
    if (size === undefined || size === 0) return [];
    return [{ offset: 0, length: size <= UNREAD_FILE_BYTES ? size : UNREAD_HEAD_BYTES }];
  }
}
