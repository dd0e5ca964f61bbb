// `augur predict eval`: replays stored traces through the predictors with
// held-out splits (evaluate.ts) and prints the results table. Traces come
// from a node's root (<root>/traces) or a directory of exported ones
// (`*.jsonl`, or zstd-compressed `*.jsonl.zst`, as docs/traces holds); the
// locality predictor's layer listings from `catalog.json[.zst]` beside them,
// or from the root's cached layer indexes.
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { decompress } from "zstd-napi";
import { InvalidArgumentError, NotFoundError, errorMessage } from "../errdefs/errors.js";
import { cleanPath } from "../layer/layer-index.js";
import { parseTarIndex } from "../layer/tar-index-codec.js";
import { parseTrace, type Trace } from "../trace/trace-format.js";
import { traceDir } from "../trace/trace-store.js";
import { DEFAULT_GRANULARITY, DEFAULT_LIMIT, DEFAULT_STARTUP_MS, evaluate, renderMarkdown } from "./evaluate.js";
import { predictorNames, type CatalogFile, type LayerCatalog } from "./predictor.js";
import "./predictors.js";

export const PREDICT_USAGE = `  augur predict eval [--root DIR | --traces DIR] [--predictors a,b,...]
             [--granularity N] [--limit N] [--startup-ms N] [--json FILE]
      Evaluate predictors on stored traces with held-out splits (later runs of
      a workload; a workload never seen): precision, recall, timeliness,
      latency and training cost per predictor (docs/prediction.md).
`;

const DEFAULT_ROOT = "/var/lib/augur";

const positive = (v: string | undefined, what: string, dflt: number): number => {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`--${what} ${JSON.stringify(v)} is not a whole number of at least 1`);
  return n;
};

export async function predictCommand(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<void> {
  const [sub, ...rest] = argv;
  if (sub !== "eval") throw new InvalidArgumentError(`unknown predict command ${JSON.stringify(sub ?? "")}; use eval`);
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      root: { type: "string" }, traces: { type: "string" }, predictors: { type: "string" }, granularity: { type: "string" },
      limit: { type: "string" }, "startup-ms": { type: "string" }, json: { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new InvalidArgumentError(`augur predict eval takes no arguments, got ${positionals.join(" ")}`);
  const names = values.predictors ? values.predictors.split(",").map((p) => p.trim()).filter(Boolean) : predictorNames();
  for (const n of names) if (!predictorNames().includes(n)) throw new InvalidArgumentError(`unknown predictor ${JSON.stringify(n)} (known: ${predictorNames().join(", ")})`);
  const root = values.root ?? DEFAULT_ROOT;
  const dir = values.traces ?? traceDir(root);
  const traces = readTraces(dir);
  if (traces.length < 2) throw new InvalidArgumentError(`${dir} holds ${traces.length} trace(s); an evaluation needs at least two`);
  const catalog = readCatalog(dir) ?? (values.traces ? undefined : catalogFromRoot(root));
  const result = await evaluate(traces, names, {
    granularity: positive(values.granularity, "granularity", DEFAULT_GRANULARITY),
    limit: positive(values.limit, "limit", DEFAULT_LIMIT),
    startupMs: positive(values["startup-ms"], "startup-ms", DEFAULT_STARTUP_MS),
    ...(catalog ? { catalog } : {}),
  });
  out(`traces from ${dir}${catalog ? "" : " (no layer catalog: the locality predictor predicts nothing)"}\n\n`);
  out(renderMarkdown(result));
  if (values.json) writeFileSync(values.json, JSON.stringify(result, null, 2) + "\n");
}

/** Every trace in `dir`: `*.jsonl` and `*.jsonl.zst`. */
export function readTraces(dir: string): Trace[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new NotFoundError(`cannot read traces from ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  const out: Trace[] = [];
  for (const name of names.sort()) {
    if (!name.endsWith(".jsonl") && !name.endsWith(".jsonl.zst")) continue;
    const raw = readFileSync(join(dir, name));
    const text = name.endsWith(".zst") ? decompress(raw).toString("utf8") : raw.toString("utf8");
    out.push(parseTrace(text, join(dir, name)));
  }
  return out;
}

function catalogOf(files: Map<string, CatalogFile[]>): LayerCatalog {
  return { files: (layer) => files.get(layer) };
}

/** `catalog.json[.zst]` in `dir`: layer digest -> its regular files in layer order. */
function readCatalog(dir: string): LayerCatalog | undefined {
  for (const name of ["catalog.json.zst", "catalog.json"]) {
    const path = join(dir, name);
    if (!existsSync(path)) continue;
    const raw = readFileSync(path);
    const doc = JSON.parse((name.endsWith(".zst") ? decompress(raw) : raw).toString("utf8")) as Record<string, CatalogFile[]>;
    return catalogOf(new Map(Object.entries(doc)));
  }
  return undefined;
}

/** The layer listings of the seekable indexes in a root's cache. */
function catalogFromRoot(root: string): LayerCatalog | undefined {
  const dir = join(root, "cache", "indexes", "sha256");
  if (!existsSync(dir)) return undefined;
  const files = new Map<string, CatalogFile[]>();
  for (const hex of readdirSync(dir)) {
    try {
      const index = parseTarIndex(readFileSync(join(dir, hex)));
      files.set(index.digest, index.entries.filter((e) => e.type === "file").map((e) => ({ path: cleanPath(e.path), size: e.size })));
    } catch {
      // a damaged index: that layer has no listing
    }
  }
  return catalogOf(files);
}
