// Access traces on disk: `<root>/traces/<id>.jsonl`, one file a container
// run, written append-only (trace-format.ts). Records are buffered briefly and
// written as whole lines, so a crash leaves at most a torn last line, which
// readers drop; a trace continued after a restart starts on a fresh line.
// The directory is bounded in bytes: when it grows past the bound, the oldest
// traces go first (finished ones before ones still being written), and one
// trace stops growing at its own limit.
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeSync } from "node:fs";
import { join } from "node:path";
import { InvalidArgumentError, NotFoundError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { parseRecord, parseTrace, TRACE_FORMAT_VERSION, type EndRecord, type Trace, type TraceHeader, type TraceRecord } from "./trace-format.js";

const log = logger("trace");

/** Records wait at most this long in memory before they are written. */
const FLUSH_MS = 200;
const FLUSH_BYTES = 64 << 10;
const ID = /^[0-9a-f]{12}$/;

/** Where access traces live under augur's root (`augur trace` reads them there too). */
export const traceDir = (root: string): string => join(root, "traces");

export interface TraceStoreOptions {
  dir: string;
  /** Bytes all traces may take together. */
  maxBytes: number;
  /** Bytes one trace may take; it ends with reason "limit" there. Default: a quarter of maxBytes, at most 16 MiB. */
  maxTraceBytes?: number;
}

/** A stored trace's header and size, without reading its records. */
export interface TraceFile {
  id: string;
  path: string;
  bytes: number;
  header: TraceHeader;
}

export class TraceStore {
  readonly dir: string;
  readonly maxBytes: number;
  readonly maxTraceBytes: number;
  readonly #files = new Map<string, TraceFile>();
  readonly #writers = new Map<string, TraceWriter>();
  #bytes = 0;

  constructor(opts: TraceStoreOptions) {
    if (!(opts.maxBytes > 0)) throw new InvalidArgumentError(`trace size must be positive, got ${opts.maxBytes}`);
    this.dir = opts.dir;
    this.maxBytes = opts.maxBytes;
    this.maxTraceBytes = opts.maxTraceBytes ?? Math.min(16 << 20, Math.floor(opts.maxBytes / 4));
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    for (const f of listTraceFiles(this.dir)) {
      this.#files.set(f.id, f);
      this.#bytes += f.bytes;
    }
  }

  /** Bytes the traces take on disk now (written and buffered). */
  get bytes(): number {
    return this.#bytes;
  }

  /** Stored traces, oldest first. */
  list(): TraceFile[] {
    return [...this.#files.values()].sort((a, b) => a.header.started - b.header.started);
  }

  /** Starts a new trace. */
  create(fields: Omit<TraceHeader, "kind" | "version" | "id">): TraceWriter {
    const id = randomBytes(6).toString("hex");
    const header: TraceHeader = { kind: "header", version: TRACE_FORMAT_VERSION, id, ...fields };
    const file: TraceFile = { id, path: join(this.dir, `${id}.jsonl`), bytes: 0, header };
    this.#files.set(id, file);
    const w = new TraceWriter(this, file, false);
    this.#writers.set(id, w);
    w.append(header);
    // on disk at once: `augur manifest push` right after a short container still finds its trace
    w.flushNow();
    return w;
  }

  /**
   * The unfinished trace of a container's run, to go on writing it (augur
   * restarted while the container ran), or undefined.
   */
  reopen(namespace: string, container: string, snapshot: number): TraceWriter | undefined {
    for (const f of this.#files.values()) {
      const h = f.header;
      if (h.namespace !== namespace || h.container !== container || h.snapshot !== snapshot) continue;
      const open = this.#writers.get(f.id);
      if (open) return open;
      if (endOf(f.path)) return undefined;
      const w = new TraceWriter(this, f, true);
      this.#writers.set(f.id, w);
      return w;
    }
    return undefined;
  }

  /** Ends the unfinished trace of a run, if one is on disk (its container went while augur was down, or before it wrote again). */
  endRun(namespace: string, container: string, snapshot: number, reason: EndRecord["reason"]): void {
    this.reopen(namespace, container, snapshot)?.end(reason);
  }

  /** Ends every unfinished trace of a container that no writer is writing (it was traced before a restart). */
  endContainer(namespace: string, container: string, reason: EndRecord["reason"]): void {
    for (const f of this.#files.values()) {
      const h = f.header;
      if (h.namespace !== namespace || h.container !== container || this.#writers.has(f.id) || endOf(f.path)) continue;
      const w = new TraceWriter(this, f, true);
      this.#writers.set(f.id, w);
      w.end(reason);
    }
  }

  /** Ends, as "stopped", every unfinished trace whose run `isLive` says is over (augur was down when it ended). */
  endOrphans(isLive: (h: TraceHeader) => boolean): void {
    for (const f of this.#files.values()) {
      if (this.#writers.has(f.id) || isLive(f.header) || endOf(f.path)) continue;
      const w = new TraceWriter(this, f, true);
      this.#writers.set(f.id, w);
      w.end("stopped");
    }
  }

  /** The trace with this ID, or the only one it is a prefix of. */
  resolve(idOrPrefix: string): TraceFile {
    return findTrace([...this.#files.values()], idOrPrefix, this.dir);
  }

  /** Reads a whole trace (what is written so far; buffered records are flushed first). */
  read(idOrPrefix: string): Trace {
    const f = this.resolve(idOrPrefix);
    this.#writers.get(f.id)?.flushNow();
    return parseTrace(readFileSync(f.path, "utf8"), f.path);
  }

  /** Writes everything buffered and ends every trace still open (augur is stopping). */
  close(reason: EndRecord["reason"] = "stopped"): void {
    for (const w of [...this.#writers.values()]) w.end(reason);
  }

  /** @internal: a writer's bytes went to disk (or into its buffer). */
  grew(file: TraceFile, n: number): void {
    file.bytes += n;
    this.#bytes += n;
    if (this.#bytes > this.maxBytes) this.#shrink();
  }

  /** @internal */
  closed(file: TraceFile): void {
    this.#writers.delete(file.id);
  }

  /** Drops oldest traces (finished ones first) until the directory fits. */
  #shrink(): void {
    const oldest = this.list();
    const order = [...oldest.filter((f) => !this.#writers.has(f.id)), ...oldest.filter((f) => this.#writers.has(f.id))];
    for (const f of order) {
      if (this.#bytes <= this.maxBytes) return;
      this.#writers.get(f.id)?.drop();
      this.#writers.delete(f.id);
      this.#files.delete(f.id);
      this.#bytes -= f.bytes;
      rmSync(f.path, { force: true });
      log.debug("dropped oldest trace to stay within the trace size", { trace: f.id, bytes: f.bytes });
    }
  }
}

/** Appends records to one trace file, a batch at a time. */
export class TraceWriter {
  readonly #store: TraceStore;
  readonly #file: TraceFile;
  #pending: string[] = [];
  #pendingBytes = 0;
  #timer: NodeJS.Timeout | undefined;
  #fd: number | undefined;
  #done = false;
  /** A file reopened after a crash may end in a torn line: start on a fresh one. */
  #needsNewline: boolean;

  constructor(store: TraceStore, file: TraceFile, reopened: boolean) {
    this.#store = store;
    this.#file = file;
    this.#needsNewline = reopened && !endsWithNewline(file.path);
  }

  get id(): string {
    return this.#file.id;
  }

  get header(): TraceHeader {
    return this.#file.header;
  }

  /** Milliseconds since the trace began, on this process's monotonic clock. */
  now(): number {
    return Math.max(0, Math.round((performance.timeOrigin + performance.now() - this.#file.header.started) * 1000) / 1000);
  }

  /** Queues one record; false once the trace has ended. */
  append(rec: TraceRecord): boolean {
    if (this.#done) return false;
    const line = JSON.stringify(rec) + "\n";
    if (rec.kind !== "end" && this.#file.bytes + this.#pendingBytes + line.length > this.#store.maxTraceBytes) {
      this.end("limit");
      return false;
    }
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    this.#store.grew(this.#file, line.length);
    if (this.#done) return false; // dropped by the bound just now
    if (this.#pendingBytes >= FLUSH_BYTES) this.flushNow();
    else this.#timer ??= setTimeout(() => this.flushNow(), FLUSH_MS).unref();
    return true;
  }

  /** Writes what is buffered (whole lines, one write). */
  flushNow(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#pending.length === 0) return;
    const torn = this.#needsNewline;
    const text = (torn ? "\n" : "") + this.#pending.join("");
    this.#needsNewline = false;
    this.#pending = [];
    this.#pendingBytes = 0;
    try {
      this.#fd ??= openSync(this.#file.path, "a", 0o600);
      writeSync(this.#fd, text);
      if (torn) this.#store.grew(this.#file, 1); // the newline that ends a torn line takes a byte too
    } catch (err) {
      log.warn("could not write access trace; dropping its records", { trace: this.#file.id, error: errorMessage(err) });
    }
  }

  /** Writes the end record and closes the file. */
  end(reason: EndRecord["reason"]): void {
    if (this.#done) return;
    const t = this.now();
    const line = JSON.stringify({ kind: "end", t, reason } satisfies EndRecord) + "\n";
    this.#pending.push(line);
    this.flushNow();
    this.#close();
    // Counted once written and closed: the bound may then drop this trace like any finished one.
    this.#store.grew(this.#file, line.length);
  }

  /** The bound removed this trace: stop without writing. */
  drop(): void {
    this.#pending = [];
    this.#close();
  }

  #close(): void {
    this.#done = true;
    clearTimeout(this.#timer);
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#store.closed(this.#file);
  }
}

/** The trace with this ID among `files`, or the only one it is a prefix of. */
export function findTrace(files: readonly TraceFile[], idOrPrefix: string, dir: string): TraceFile {
  const exact = files.find((f) => f.id === idOrPrefix);
  if (exact) return exact;
  const matches = files.filter((f) => idOrPrefix !== "" && f.id.startsWith(idOrPrefix));
  if (matches.length === 1) return matches[0] as TraceFile;
  if (matches.length > 1) throw new InvalidArgumentError(`trace ID ${JSON.stringify(idOrPrefix)} is ambiguous: ${matches.map((m) => m.id).join(", ")}`);
  throw new NotFoundError(`no trace ${JSON.stringify(idOrPrefix)} in ${dir} (augur trace ls lists them)`);
}

/** The trace files in `dir` with their headers; files that are not traces are left alone. */
export function listTraceFiles(dir: string): TraceFile[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new NotFoundError(`cannot read the trace directory ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  const out: TraceFile[] = [];
  for (const name of names) {
    const id = name.replace(/\.jsonl$/, "");
    if (!name.endsWith(".jsonl") || !ID.test(id)) continue;
    const path = join(dir, name);
    try {
      const header = parseRecord(firstLine(path));
      if (header?.kind !== "header" || header.id !== id) continue;
      out.push({ id, path, bytes: statSync(path).size, header });
    } catch {
      // vanished or unreadable: not listed
    }
  }
  return out.sort((a, b) => a.header.started - b.header.started);
}

function firstLine(path: string): string {
  const fd = openSync(path, "r");
  try {
    const buf = Buffer.alloc(64 << 10);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const text = buf.subarray(0, n).toString("utf8");
    const nl = text.indexOf("\n");
    return nl < 0 ? text : text.slice(0, nl);
  } finally {
    closeSync(fd);
  }
}

function tail(path: string, bytes: number): string {
  const fd = openSync(path, "r");
  try {
    const size = statSync(path).size;
    const buf = Buffer.alloc(Math.min(bytes, size));
    readSync(fd, buf, 0, buf.length, size - buf.length);
    return buf.toString("utf8");
  } finally {
    closeSync(fd);
  }
}

const endsWithNewline = (path: string): boolean => {
  try {
    return tail(path, 1) === "\n" || statSync(path).size === 0;
  } catch {
    return true;
  }
};

/** Whether a trace file's last whole line is its end record. */
function endOf(path: string): boolean {
  try {
    const lines = tail(path, 4096).split("\n").filter(Boolean);
    return parseRecord(lines[lines.length - 1] ?? "")?.kind === "end";
  } catch {
    return false;
  }
}
