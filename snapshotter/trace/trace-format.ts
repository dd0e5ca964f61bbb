// The on-disk form of an access trace: JSON lines, one record a line, written
// append-only. The first line is the header; a `workload` line follows once
// containerd has told augur what the container runs; `access` lines record
// what the container asked of augur's FUSE layers; an `end` line closes it.
// A line cut short by a crash is dropped when read, and everything before it
// stands. `augur trace export` writes access lines only, each with its trace ID.
import { InvalidArgumentError } from "../errdefs/errors.js";
import type { Workload } from "./workload.js";

export const TRACE_FORMAT_VERSION = 1;

export type AccessOp = "lookup" | "open" | "read" | "readdir";

/** One request a container made of a lazily served layer. */
export interface AccessRecord {
  kind: "access";
  /** Milliseconds since the trace began (monotonic clock). */
  t: number;
  op: AccessOp;
  /** Digest of the layer blob the request went to. */
  layer: string;
  /** Path inside the layer ("" is its root). */
  path: string;
  /** Reads: byte offset and length the kernel asked for. */
  offset?: number;
  length?: number;
  /** Opens: the file's size, so a predictor knows what the open may cost to fetch. */
  size?: number;
  /** The process that made the request (host pid namespace). */
  pid?: number;
}

export interface TraceHeader {
  kind: "header";
  version: number;
  id: string;
  /** containerd namespace and snapshot key of the container's root filesystem (its container ID for ctr, nerdctl and CRI). */
  namespace: string;
  container: string;
  /** augur's id of that active snapshot: each run of a container ID gets a new one. */
  snapshot: number;
  /** Wall-clock start, ms since the epoch. */
  started: number;
  /** Digests of the lazily served layers below the container, bottom first. */
  layers: string[];
}

export interface WorkloadRecord {
  kind: "workload";
  t: number;
  workload: Workload;
}

export interface EndRecord {
  kind: "end";
  t: number;
  /** Why the trace ended: the container's snapshot was removed, the trace reached its size limit, augur stopped. */
  reason: "removed" | "limit" | "stopped";
}

export type TraceRecord = TraceHeader | WorkloadRecord | AccessRecord | EndRecord;

/** A trace as read back: header, what is known of its workload, and its accesses in order. */
export interface Trace {
  header: TraceHeader;
  workload: Workload | undefined;
  accesses: AccessRecord[];
  end: EndRecord | undefined;
  /** Lines that could not be read (a torn last line after a crash, or damage). */
  skippedLines: number;
}

const OPS = new Set<AccessOp>(["lookup", "open", "read", "readdir"]);

const isNum = (v: unknown): v is number => typeof v === "number" && Number.isFinite(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === "string";

function checkAccess(v: Record<string, unknown>): AccessRecord | undefined {
  if (!isNum(v.t) || !OPS.has(v.op as AccessOp) || !isStr(v.layer) || !isStr(v.path)) return undefined;
  for (const k of ["offset", "length", "size", "pid"]) if (v[k] !== undefined && !isNum(v[k])) return undefined;
  return v as unknown as AccessRecord;
}

function checkHeader(v: Record<string, unknown>): TraceHeader | undefined {
  const ok = isNum(v.version) && isStr(v.id) && isStr(v.namespace) && isStr(v.container) && isNum(v.snapshot) && isNum(v.started)
    && Array.isArray(v.layers) && v.layers.every(isStr);
  return ok ? (v as unknown as TraceHeader) : undefined;
}

/** Parses one line; undefined if it is not a well-formed record. */
export function parseRecord(line: string): TraceRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== "object" || v === null) return undefined;
  const r = v as Record<string, unknown>;
  switch (r.kind) {
    case "access":
      return checkAccess(r);
    case "header":
      return checkHeader(r);
    case "workload":
      return isNum(r.t) && typeof r.workload === "object" && r.workload !== null ? (r as unknown as WorkloadRecord) : undefined;
    case "end":
      return isNum(r.t) && isStr(r.reason) ? (r as unknown as EndRecord) : undefined;
    default:
      return undefined;
  }
}

/** Reads a whole trace file's text. Throws when it has no header (not a trace). */
export function parseTrace(text: string, where: string): Trace {
  const lines = text.split("\n");
  let header: TraceHeader | undefined;
  let workload: Workload | undefined;
  let end: EndRecord | undefined;
  const accesses: AccessRecord[] = [];
  let skippedLines = 0;
  for (const line of lines) {
    if (line === "") continue;
    const rec = parseRecord(line);
    if (!rec) {
      skippedLines++;
      continue;
    }
    if (rec.kind === "header") header ??= rec;
    else if (rec.kind === "workload") workload = rec.workload;
    else if (rec.kind === "access") accesses.push(rec);
    else end = rec;
  }
  if (!header) throw new InvalidArgumentError(`${where}: not an augur trace (no header line)`);
  if (header.version > TRACE_FORMAT_VERSION) {
    throw new InvalidArgumentError(`${where}: trace format version ${header.version} is newer than this augur reads (${TRACE_FORMAT_VERSION})`);
  }
  return { header, workload, accesses, end, skippedLines };
}
