import type { AccessRecord, Trace } from "../../../snapshotter/trace/trace-format.js";
import { makeWorkload } from "../../../snapshotter/trace/workload.js";

export interface FileSpec {
  path: string;
  /** Defaults to the trace's first layer. */
  layer?: string;
  /** First-touch time; defaults to the file's index × 10 ms. */
  t?: number;
  size?: number;
  /** [offset, length, t?] reads made after the open. */
  reads?: [number, number, number?][];
}

export interface TraceSpec {
  id: string;
  started: number;
  layers: string[];
  args?: string[];
  files: (string | FileSpec)[];
}

/** A parsed trace: per file an open (with its size) and its reads, in the order given. */
export function makeTrace(spec: TraceSpec): Trace {
  const accesses: AccessRecord[] = [];
  spec.files.forEach((f, i) => {
    const file: FileSpec = typeof f === "string" ? { path: f } : f;
    const layer = file.layer ?? spec.layers[0] ?? "";
    const t = file.t ?? i * 10;
    accesses.push({ kind: "access", t, op: "open", layer, path: file.path, ...(file.size !== undefined ? { size: file.size } : {}) });
    for (const [offset, length, rt] of file.reads ?? []) accesses.push({ kind: "access", t: rt ?? t, op: "read", layer, path: file.path, offset, length });
  });
  const workload = makeWorkload({ layers: spec.layers, args: spec.args ?? ["run"], cwd: "/", env: {} });
  return {
    header: { kind: "header", version: 1, id: spec.id, namespace: "default", container: spec.id, snapshot: 1, started: spec.started, layers: spec.layers },
    workload, accesses, end: undefined, skippedLines: 0,
  };
}

export const paths = (files: readonly { path: string }[]): string[] => files.map((f) => f.path);
