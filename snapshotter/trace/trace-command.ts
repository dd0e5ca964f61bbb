// `augur trace ls|show|export`: reads the traces under --root directly, so it
// works whether or not `augur serve` is running (a trace being written shows
// what has reached the disk, at most a fraction of a second behind).
import { existsSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { InvalidArgumentError, NotFoundError } from "../errdefs/errors.js";
import { parseTrace, type AccessRecord, type Trace } from "./trace-format.js";
import { findTrace, listTraceFiles, traceDir, type TraceFile } from "./trace-store.js";

export const TRACE_USAGE = `  augur trace ls [--root DIR]
      List the access traces: one per container run, oldest first.
  augur trace show [--root DIR] ID
      A trace's container, workload and signature, what it read per layer,
      then every access (ms since the trace began, op, layer, path, range).
  augur trace export [--root DIR] [ID]
      Accesses as JSON lines, one access a line (all traces without ID):
      trace, signature, t, op, layer, path, offset, length, size, pid.
      IDs may be shortened to any unique prefix.
`;

const DEFAULT_ROOT = "/var/lib/augur";

export async function traceCommand(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({ args: rest, options: { root: { type: "string" } }, allowPositionals: true, strict: true });
  const root = values.root ?? DEFAULT_ROOT;
  switch (sub) {
    case "ls":
      if (positionals.length) throw new InvalidArgumentError(`augur trace ls takes no arguments, got ${positionals.join(" ")}`);
      return out(listing(files(root)));
    case "show": {
      if (positionals.length !== 1) throw new InvalidArgumentError("augur trace show takes one trace ID (augur trace ls lists them)");
      return out(show(read(findTrace(files(root), positionals[0] as string, traceDir(root)))));
    }
    case "export": {
      if (positionals.length > 1) throw new InvalidArgumentError("augur trace export takes at most one trace ID");
      const all = files(root);
      const chosen = positionals.length ? [findTrace(all, positionals[0] as string, traceDir(root))] : all;
      for (const f of chosen) out(exportLines(read(f)));
      return;
    }
    default:
      throw new InvalidArgumentError(`unknown trace command ${JSON.stringify(sub ?? "")}; use ls, show or export`);
  }
}

function files(root: string): TraceFile[] {
  if (!existsSync(root)) throw new NotFoundError(`augur root ${root} does not exist (give --root: where augur serve keeps its state)`);
  const dir = traceDir(root);
  if (!existsSync(dir)) return []; // augur never traced on this root
  return listTraceFiles(dir);
}


const read = (f: TraceFile): Trace => parseTrace(readFileSync(f.path, "utf8"), f.path);

const mb = (n: number): string => (n >= 1e6 ? `${(n / 1e6).toFixed(1)}MB` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}kB` : `${n}B`);
const when = (ms: number): string => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z");
const short = (digest: string): string => digest.replace(/^sha256:/, "").slice(0, 12);

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] ?? 0))).join("  ")).join("\n") + "\n";
}

interface Counts {
  accesses: number;
  files: number;
  bytesRead: number;
  byLayer: Map<string, { files: Set<string>; bytes: number }>;
}

function counts(accesses: readonly AccessRecord[]): Counts {
  const files = new Set<string>();
  const byLayer = new Map<string, { files: Set<string>; bytes: number }>();
  let bytesRead = 0;
  for (const a of accesses) {
    let l = byLayer.get(a.layer);
    if (!l) byLayer.set(a.layer, (l = { files: new Set(), bytes: 0 }));
    if (a.op === "open" || a.op === "read") {
      files.add(`${a.layer} ${a.path}`);
      l.files.add(a.path);
    }
    if (a.op === "read") {
      bytesRead += a.length ?? 0;
      l.bytes += a.length ?? 0;
    }
  }
  return { accesses: accesses.length, files: files.size, bytesRead, byLayer };
}

function listing(all: TraceFile[]): string {
  const rows = [["ID", "STARTED", "NAMESPACE", "CONTAINER", "IMAGE", "ACCESSES", "FILES", "READ", "STATE"]];
  for (const f of all) {
    const t = read(f);
    const c = counts(t.accesses);
    rows.push([
      f.id, when(f.header.started), f.header.namespace, f.header.container, t.workload?.image ?? "-",
      String(c.accesses), String(c.files), mb(c.bytesRead), t.end ? `ended (${t.end.reason})` : "open",
    ]);
  }
  return table(rows);
}

function show(t: Trace): string {
  const h = t.header;
  const w = t.workload;
  const c = counts(t.accesses);
  const lines = [
    `trace      ${h.id}`,
    `container  ${h.namespace}/${h.container} (snapshot ${h.snapshot})`,
    `started    ${when(h.started)}`,
    `state      ${t.end ? `ended after ${(t.end.t / 1000).toFixed(1)} s (${t.end.reason})` : "open"}`,
    `signature  ${w?.signature ?? "(workload not known yet)"}`,
    ...(w
      ? [
          `image      ${w.image ?? "-"}${w.manifest ? ` (${w.manifest})` : ""}`,
          `args       ${JSON.stringify(w.args)}`,
          `cwd        ${w.cwd || "-"}`,
          `env        ${Object.entries(w.env).map(([k, v]) => `${k}=${v}`).join(" ") || "-"}`,
        ]
      : []),
    `accesses   ${c.accesses} (${c.files} files, ${mb(c.bytesRead)} read)${t.skippedLines ? `; ${t.skippedLines} unreadable lines skipped` : ""}`,
    "layers",
    ...h.layers.map((l) => {
      const s = c.byLayer.get(l);
      return `  ${l}  ${s ? `${s.files.size} files, ${mb(s.bytes)} read` : "not touched"}`;
    }),
    "",
    table([
      ["MS", "OP", "LAYER", "PATH", "RANGE"],
      ...t.accesses.map((a) => [
        a.t.toFixed(3), a.op, short(a.layer), `/${a.path}`,
        a.op === "read" ? `${a.offset ?? 0}+${a.length ?? 0}` : a.op === "open" && a.size !== undefined ? `size ${a.size}` : "",
      ]),
    ]),
  ];
  return lines.join("\n");
}

function exportLines(t: Trace): string {
  const signature = t.workload?.signature;
  return t.accesses
    .map((a) => {
      const { kind: _kind, ...fields } = a;
      return JSON.stringify({ trace: t.header.id, ...(signature ? { signature } : {}), ...fields }) + "\n";
    })
    .join("");
}
