// The cluster manifest (the seed's section 2): what a cluster has learned
// about its workloads, in a form that travels through the registry. Per
// workload signature: its layer preference list (the layers in the order it
// first reads them), its file prefetch list (layer, path, byte ranges, order,
// confidence) and its prefetch granularity. Per layer digest: a reference to
// its seekable index blob. Plus a format version, who built it and from how
// many runs. docs/cluster-manifest.md describes it for people,
// cluster-manifest.schema.json for tools.
//
// Everything in a cluster manifest someone else built is untrusted input: it
// is parsed with hard limits, and what it says is only ever used as a hint of
// what to fetch (a path that does not exist costs nothing; an index is
// checked against the blob before anything is served from it, remote/).
import { hostname } from "node:os";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { TraceHistory } from "../predict/history.js";
import { fileId } from "../predict/predictor.js";
import type { AccessRecord, Trace } from "../trace/trace-format.js";
import { makeWorkload, type Workload } from "../trace/workload.js";

export const CLUSTER_MANIFEST_MEDIA_TYPE = "application/vnd.augur.cluster-manifest.v1+json";
/** The artifactType of the OCI artifacts augur pushes (image profiles and whole cluster manifests). */
export const PROFILE_ARTIFACT_TYPE = "application/vnd.augur.profile.v1";
export const CLUSTER_MANIFEST_VERSION = 1;

/** Bounds on what a parsed manifest may hold: a hostile one costs bounded memory and time. */
export const LIMITS = {
  bytes: 32 << 20,
  workloads: 2_000,
  filesPerWorkload: 50_000,
  rangesPerFile: 1_024,
  layersPerWorkload: 256,
  stringBytes: 4_096,
} as const;

export interface ProfileFile {
  layer: string;
  /** Path inside the layer ("" never: a file). */
  path: string;
  /** [offset, length] byte ranges of the file the workload reads. */
  ranges: [number, number][];
  /** Position in the workload's read order (0 first). */
  order: number;
  /** Share of the workload's runs that read it, 0 to 1. */
  confidence: number;
}

export interface WorkloadProfile {
  signature: string;
  image?: string;
  manifest?: string;
  /** Layer digests, bottom first. */
  layers: string[];
  args: string[];
  cwd: string;
  env: Record<string, string>;
  /** Runs this profile was learned from. */
  runs: number;
  /** Predicted files a node queues together per layer. */
  granularity: number;
  /** The layers in the order the workload first reads them (the seed's layer preference list). */
  layerPreference: string[];
  /** The files it reads, in order. */
  files: ProfileFile[];
  /**
   * Entries it looks up without reading (directories, files it only stats),
   * in first-touch order. A node whose index of the layer is untrusted must
   * check each entry's tar header before answering for it; knowing these, it
   * fetches those headers ahead instead of waiting for each.
   */
  lookups?: ProfileLookup[];
}

/** An entry a workload looks up without reading it. */
export interface ProfileLookup {
  layer: string;
  path: string;
  /**
   * Where it comes among the reads: the `order` of the first file read after
   * it (files.length: after them all). A node fetches its header with the
   * file it comes before, not all headers at once ahead of every file.
   * Absent in manifests from older builders, and for lookups only older runs made.
   */
  before?: number;
}

export interface IndexReference {
  /** The seekable index blob's digest (the sha256 of its bytes) and size. */
  digest: string;
  size: number;
  mediaType: string;
}

export interface ClusterManifest {
  schemaVersion: typeof CLUSTER_MANIFEST_VERSION;
  mediaType: typeof CLUSTER_MANIFEST_MEDIA_TYPE;
  builtBy: { tool: string; node: string; at: string };
  /** Container runs (traces) the profiles were learned from. */
  runs: number;
  workloads: WorkloadProfile[];
  /** Per layer digest: where its seekable index is (plain layers the builder had indexed). */
  layers: Record<string, { index?: IndexReference }>;
}

export interface BuildOptions {
  granularity: number;
  /** The seekable index of a layer, when the builder has one to publish. */
  indexOf?: (layer: string) => IndexReference | undefined;
  /** Only workloads whose layers include one of these (an image's profile); all without. */
  layers?: readonly string[];
  tool: string;
}

/** Builds a cluster manifest from this node's traces. */
export function buildClusterManifest(traces: readonly Trace[], opts: BuildOptions): ClusterManifest {
  const history = new TraceHistory(traces);
  const byId = new Map(traces.map((t) => [t.header.id, t]));
  const bySignature = new Map<string, typeof history.traces[number][]>();
  for (const t of history.traces) {
    if (opts.layers && !t.workload.layers.some((l) => opts.layers?.includes(l))) continue;
    let list = bySignature.get(t.workload.signature);
    if (!list) bySignature.set(t.workload.signature, (list = []));
    list.push(t);
  }
  const workloads: WorkloadProfile[] = [];
  for (const [signature, runs] of bySignature) {
    const newest = runs[runs.length - 1] as typeof runs[number];
    const counts = new Map<string, number>();
    for (const r of runs) for (const f of r.files) counts.set(fileId(f), (counts.get(fileId(f)) ?? 0) + 1);
    // the newest run's order, then files only older runs read
    const order: { layer: string; path: string }[] = [];
    const seen = new Set<string>();
    for (const r of [newest, ...runs.slice(0, -1).reverse()]) {
      for (const f of r.files) {
        if (seen.has(fileId(f))) continue;
        seen.add(fileId(f));
        order.push({ layer: f.layer, path: f.path });
      }
    }
    const files: ProfileFile[] = [];
    for (const f of order) {
      const ranges = history.footprint(f).map((r): [number, number] => [r.offset, r.length]);
      if (ranges.length === 0) continue; // nothing to fetch: an empty file
      files.push({ ...f, ranges, order: files.length, confidence: round((counts.get(fileId(f)) ?? 0) / runs.length) });
    }
    const read = new Set(files.map(fileId));
    const orderOf = new Map(files.map((f) => [fileId(f), f.order]));
    const lookups: ProfileLookup[] = [];
    for (const id of [newest, ...runs.slice(0, -1).reverse()].map((r) => r.id)) {
      // in the newest run, files are in the order it first read them: a lookup comes before the file after the last one read
      let before = id === newest.id ? 0 : undefined;
      for (const a of byId.get(id)?.accesses ?? []) {
        const at = orderOf.get(fileId(a));
        if (before !== undefined && at !== undefined && a.op !== "lookup" && a.op !== "readdir") before = Math.max(before, at + 1);
        if (a.op !== "lookup" || a.path === "" || lookups.length >= LIMITS.filesPerWorkload) continue;
        const key = fileId(a);
        if (read.has(key) || seen.has(`lookup ${key}`)) continue;
        seen.add(`lookup ${key}`);
        lookups.push({ layer: a.layer, path: a.path, ...(before !== undefined ? { before } : {}) });
      }
    }
    const w = newest.workload;
    const layerPreference: string[] = [];
    for (const f of files) if (!layerPreference.includes(f.layer)) layerPreference.push(f.layer);
    workloads.push({
      signature, ...(w.image ? { image: w.image } : {}), ...(w.manifest ? { manifest: w.manifest } : {}),
      layers: w.layers, args: w.args, cwd: w.cwd, env: w.env, runs: runs.length, granularity: opts.granularity, layerPreference, files,
      ...(lookups.length ? { lookups } : {}),
    });
  }
  const layers: ClusterManifest["layers"] = {};
  for (const w of workloads) {
    for (const l of w.layers) {
      const index = opts.indexOf?.(l);
      layers[l] = index ? { index } : {};
    }
  }
  return {
    schemaVersion: CLUSTER_MANIFEST_VERSION, mediaType: CLUSTER_MANIFEST_MEDIA_TYPE,
    builtBy: { tool: opts.tool, node: hostname(), at: new Date().toISOString() },
    runs: workloads.reduce((n, w) => n + w.runs, 0), workloads, layers,
  };
}

const round = (x: number): number => Math.round(x * 1000) / 1000;

/** One trace per workload profile, so the predictors learn from a cluster manifest as from this node's own traces. */
export function profileTraces(m: ClusterManifest, source: string): Trace[] {
  const started = Date.parse(m.builtBy.at) || 0;
  return m.workloads.map((w, i) => {
    const input = { ...(w.image ? { image: w.image } : {}), ...(w.manifest ? { manifest: w.manifest } : {}), layers: w.layers, args: w.args, cwd: w.cwd, env: w.env };
    // a signature that does not match its own fields is the builder's word against ours: ours counts
    const workload: Workload = makeWorkload(input);
    const accesses: AccessRecord[] = [];
    const files = [...w.files].sort((a, b) => a.order - b.order);
    files.forEach((f, t) => accesses.push({ kind: "access", t, op: "open", layer: f.layer, path: f.path }));
    files.forEach((f, t) => {
      for (const [offset, length] of f.ranges) accesses.push({ kind: "access", t, op: "read", layer: f.layer, path: f.path, offset, length });
    });
    return {
      header: { kind: "header", version: 1, id: `${source}#${i}`, namespace: "", container: "", snapshot: 0, started, layers: w.layers },
      workload, accesses, end: { kind: "end", t: files.length, reason: "removed" }, skippedLines: 0,
    };
  });
}

// ---- parsing: everything checked, nothing trusted ----

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function fail(where: string, what: string): never {
  throw new InvalidArgumentError(`cluster manifest: ${where}: ${what}`);
}
function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
function str(v: unknown, where: string, max: number = LIMITS.stringBytes): string {
  if (typeof v !== "string" || v.length > max) fail(where, `not a string of at most ${max} characters`);
  return v;
}
function digest(v: unknown, where: string): string {
  const s = str(v, where);
  if (!DIGEST.test(s)) fail(where, `${JSON.stringify(s.slice(0, 80))} is not a sha256 digest`);
  return s;
}
function count(v: unknown, where: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) fail(where, "not a whole number");
  return v;
}
function list(v: unknown, where: string, max: number): unknown[] {
  if (!Array.isArray(v)) fail(where, "not a list");
  if (v.length > max) fail(where, `${v.length} entries, at most ${max} allowed`);
  return v;
}
function path(v: unknown, where: string): string {
  const p = str(v, where);
  if (p === "" || p.startsWith("/") || p.includes("\0") || p.split("/").some((part) => part === ".." || part === "." || part === "")) {
    fail(where, `${JSON.stringify(p.slice(0, 80))} is not a clean path inside a layer`);
  }
  return p;
}

function parseFile(v: unknown, where: string, layers: ReadonlySet<string>): ProfileFile {
  if (!isObj(v)) fail(where, "not an object");
  const layer = digest(v.layer, `${where}.layer`);
  if (!layers.has(layer)) fail(`${where}.layer`, `${layer} is not one of the workload's layers`);
  const ranges = list(v.ranges, `${where}.ranges`, LIMITS.rangesPerFile).map((r, k): [number, number] => {
    const pair = list(r, `${where}.ranges[${k}]`, 2);
    if (pair.length !== 2) fail(`${where}.ranges[${k}]`, "not an [offset, length] pair");
    return [count(pair[0], `${where}.ranges[${k}][0]`), count(pair[1], `${where}.ranges[${k}][1]`)];
  });
  const confidence = v.confidence;
  if (typeof confidence !== "number" || !(confidence >= 0 && confidence <= 1)) fail(`${where}.confidence`, "not a number from 0 to 1");
  return { layer, path: path(v.path, `${where}.path`), ranges, order: count(v.order, `${where}.order`), confidence };
}

function parseWorkload(v: unknown, where: string): WorkloadProfile {
  if (!isObj(v)) fail(where, "not an object");
  const layers = list(v.layers, `${where}.layers`, LIMITS.layersPerWorkload).map((l, k) => digest(l, `${where}.layers[${k}]`));
  const layerSet = new Set(layers);
  const env = v.env;
  if (!isObj(env)) fail(`${where}.env`, "not an object");
  const envOut: Record<string, string> = {};
  for (const [k, x] of Object.entries(env)) envOut[str(k, `${where}.env key`)] = str(x, `${where}.env.${k}`);
  const granularity = count(v.granularity, `${where}.granularity`);
  if (granularity < 1) fail(`${where}.granularity`, "must be at least 1");
  const w: WorkloadProfile = {
    signature: digest(v.signature, `${where}.signature`),
    ...(v.image !== undefined ? { image: str(v.image, `${where}.image`) } : {}),
    ...(v.manifest !== undefined ? { manifest: digest(v.manifest, `${where}.manifest`) } : {}),
    layers,
    args: list(v.args, `${where}.args`, 1_024).map((a, k) => str(a, `${where}.args[${k}]`)),
    cwd: str(v.cwd, `${where}.cwd`),
    env: envOut,
    runs: count(v.runs, `${where}.runs`),
    granularity,
    layerPreference: list(v.layerPreference, `${where}.layerPreference`, LIMITS.layersPerWorkload).map((l, k) => {
      const d = digest(l, `${where}.layerPreference[${k}]`);
      if (!layerSet.has(d)) fail(`${where}.layerPreference[${k}]`, `${d} is not one of the workload's layers`);
      return d;
    }),
    files: list(v.files, `${where}.files`, LIMITS.filesPerWorkload).map((f, k) => parseFile(f, `${where}.files[${k}]`, layerSet)),
  };
  if (v.lookups !== undefined) {
    w.lookups = list(v.lookups, `${where}.lookups`, LIMITS.filesPerWorkload).map((e, k) => {
      const at = `${where}.lookups[${k}]`;
      if (!isObj(e)) fail(at, "not an object");
      const layer = digest(e.layer, `${at}.layer`);
      if (!layerSet.has(layer)) fail(`${at}.layer`, `${layer} is not one of the workload's layers`);
      const before = e.before === undefined ? undefined : count(e.before, `${at}.before`);
      return { layer, path: path(e.path, `${at}.path`), ...(before !== undefined ? { before } : {}) };
    });
  }
  return w;
}

/** Parses a cluster manifest (bytes as fetched or read); throws InvalidArgumentError naming what is wrong. */
export function parseClusterManifest(bytes: Buffer | string, where = "cluster manifest"): ClusterManifest {
  const size = typeof bytes === "string" ? Buffer.byteLength(bytes) : bytes.length;
  if (size > LIMITS.bytes) fail(where, `${size} bytes, at most ${LIMITS.bytes} allowed`);
  let doc: unknown;
  try {
    doc = JSON.parse(typeof bytes === "string" ? bytes : bytes.toString("utf8"));
  } catch (err) {
    fail(where, `not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (!isObj(doc)) fail(where, "not a JSON object");
  if (doc.mediaType !== CLUSTER_MANIFEST_MEDIA_TYPE) fail("mediaType", `${JSON.stringify(doc.mediaType)} is not ${CLUSTER_MANIFEST_MEDIA_TYPE}`);
  if (doc.schemaVersion !== CLUSTER_MANIFEST_VERSION) fail("schemaVersion", `${JSON.stringify(doc.schemaVersion)} is not ${CLUSTER_MANIFEST_VERSION} (this augur reads version ${CLUSTER_MANIFEST_VERSION})`);
  const by = doc.builtBy;
  if (!isObj(by)) fail("builtBy", "not an object");
  const layersDoc = doc.layers;
  if (!isObj(layersDoc)) fail("layers", "not an object");
  const layers: ClusterManifest["layers"] = {};
  for (const [l, info] of Object.entries(layersDoc)) {
    digest(l, "layers key");
    if (!isObj(info)) fail(`layers.${l}`, "not an object");
    if (info.index === undefined) {
      layers[l] = {};
      continue;
    }
    const ix = info.index;
    if (!isObj(ix)) fail(`layers.${l}.index`, "not an object");
    layers[l] = { index: { digest: digest(ix.digest, `layers.${l}.index.digest`), size: count(ix.size, `layers.${l}.index.size`), mediaType: str(ix.mediaType, `layers.${l}.index.mediaType`) } };
  }
  return {
    schemaVersion: CLUSTER_MANIFEST_VERSION, mediaType: CLUSTER_MANIFEST_MEDIA_TYPE,
    builtBy: { tool: str(by.tool, "builtBy.tool"), node: str(by.node, "builtBy.node"), at: str(by.at, "builtBy.at") },
    runs: count(doc.runs, "runs"),
    workloads: list(doc.workloads, "workloads", LIMITS.workloads).map((w, k) => parseWorkload(w, `workloads[${k}]`)),
    layers,
  };
}

/** The workload profiles a query names: by signature, or by image reference or manifest digest. */
export function findProfiles(m: ClusterManifest, q: { signature?: string; image?: string }): WorkloadProfile[] {
  return m.workloads.filter((w) => (q.signature !== undefined && w.signature === q.signature)
    || (q.image !== undefined && (w.image === q.image || w.manifest === q.image)));
}
