// What a container runs, as containerd's containers API describes it, and the
// workload signature: a digest of the parts that decide which files it reads.
// Two containers with one signature run the same thing (the image's tag and
// the container's name do not count); two with different signatures may still
// be alike (shared layers, similar commands), which `similarity` measures.
import { createHash } from "node:crypto";

/**
 * Environment variables that change which files a process reads: the
 * loader's and interpreters' search paths and options. Only these enter the
 * signature; the rest (HOSTNAME, credentials, per-pod values) would make every
 * container unique.
 */
export const SIGNATURE_ENV_KEYS = [
  "PATH", "LD_LIBRARY_PATH", "LD_PRELOAD",
  "PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE", "PYTHONOPTIMIZE",
  "NODE_PATH", "NODE_OPTIONS", "NODE_ENV",
  "JAVA_HOME", "JAVA_TOOL_OPTIONS", "CLASSPATH",
  "GEM_HOME", "GEM_PATH", "PERL5LIB", "GOPATH", "LANG", "LC_ALL",
] as const;

export interface Workload {
  /** sha256 of the canonical JSON of the fields below but `image` (see signatureOf). */
  signature: string;
  /** Image reference the container was created from (not part of the signature). */
  image?: string;
  /** Image manifest digest, when containerd knows the image. */
  manifest?: string;
  /** Layer digests, bottom first. */
  layers: string[];
  /** Process args (entrypoint and command as the runtime spec has them). */
  args: string[];
  cwd: string;
  /** The SIGNATURE_ENV_KEYS the process has, with their values. */
  env: Record<string, string>;
}

export type WorkloadInput = Omit<Workload, "signature">;

/** The signature of a workload: stable across runs, tags and container names. */
export function signatureOf(w: WorkloadInput): string {
  const env = Object.fromEntries(Object.entries(w.env).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  const canonical = JSON.stringify({ manifest: w.manifest ?? null, layers: w.layers, args: w.args, cwd: w.cwd, env });
  return `sha256:${createHash("sha256").update(canonical).digest("hex")}`;
}

export function makeWorkload(w: WorkloadInput): Workload {
  return { ...w, signature: signatureOf(w) };
}

/** The env entries (`KEY=value`) that enter the signature. */
export function signatureEnv(env: readonly string[]): Record<string, string> {
  const keys = new Set<string>(SIGNATURE_ENV_KEYS);
  const out: Record<string, string> = {};
  for (const kv of env) {
    const eq = kv.indexOf("=");
    if (eq > 0 && keys.has(kv.slice(0, eq))) out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** Words of a command line, for comparing commands: args split on spaces and path separators, flags and values alike. */
export function commandTokens(args: readonly string[]): Set<string> {
  const out = new Set<string>();
  for (const a of args) for (const t of a.split(/[\s/=,;:()"']+/)) if (t) out.add(t);
  return out;
}

const jaccard = (a: ReadonlySet<string>, b: ReadonlySet<string>): number => {
  if (a.size === 0 && b.size === 0) return 1;
  let both = 0;
  for (const x of a) if (b.has(x)) both++;
  return both / (a.size + b.size - both);
};

/**
 * How alike two workloads are, 0 to 1: 1 for one signature. Otherwise the
 * share of `known`'s read bytes that lie in layers `query` also has (so a
 * shared base layer the known workload read much of counts for much, a shared
 * layer it hardly touched for little), blended with how alike the commands
 * are. `bytesByLayer` is what `known` read from each of its layers; without
 * it every shared layer counts alike.
 */
export function similarity(query: WorkloadInput, known: Workload, bytesByLayer?: ReadonlyMap<string, number>): number {
  if ("signature" in query && (query as Workload).signature === known.signature) return 1;
  const shared = new Set(query.layers);
  let total = 0;
  let inShared = 0;
  for (const layer of new Set(known.layers)) {
    const w = bytesByLayer ? (bytesByLayer.get(layer) ?? 0) : 1;
    total += w;
    if (shared.has(layer)) inShared += w;
  }
  const layerScore = total > 0 ? inShared / total : 0;
  if (layerScore === 0) return 0; // nothing in common to predict from
  const commandScore = query.args.length === 0 ? 0.5 : jaccard(commandTokens(query.args), commandTokens(known.args));
  // a same-image workload with unknown args still shares everything but the command
  return Math.min(0.99, 0.7 * layerScore + 0.3 * commandScore);
}
