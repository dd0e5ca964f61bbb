// augur serve's settings: defaults, then the TOML file from --config, then flags.
// Everything augur writes lives under `root` unless a setting says otherwise,
// so several instances can run side by side.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { DEFAULT_HOSTS_DIR } from "../registry/hosts.js";
import { parseListenAddress } from "../peer/blob-server.js";
import { normalizePeerUrl } from "../peer/peers.js";

export { DEFAULT_HOSTS_DIR };

export interface ServeConfig {
  /** State directory: metadata, snapshot directories, the API socket. */
  root: string;
  /** Unix socket containerd's proxy_plugins entry points at. */
  socket: string;
  /** HTTP API: a unix socket path, or host:port for TCP. Default: <root>/api.sock. */
  api: string;
  /** Serve layers lazily when Prepare's labels allow it; false makes containerd unpack every layer. */
  lazy: boolean;
  /** containerd-style registry host configuration: `<dir>/<host>/hosts.toml`. */
  hostsDir: string;
  /** Node-local layer cache; may be shared by several augurs. Default: <root>/cache. */
  cacheDir: string;
  /** Bytes the cache may hold. */
  cacheSize: number;
  /** Unpack a lazily served layer once it is completely cached; new containers then skip FUSE. */
  nativeCopy: boolean;
  /** Bytes all native copies together may take (default: the cache size). */
  nativeCopySize: number;
  /** docker config.json with registry credentials; default $DOCKER_CONFIG/config.json or ~/.docker/config.json. */
  dockerConfig: string | undefined;
  /** Record each container's accesses to lazily served layers (access traces). */
  trace: boolean;
  /** Bytes the access traces under <root>/traces may take together. */
  traceSize: number;
  /** containerd's socket, asked what each container runs (its workload signature). */
  containerdAddress: string;
  /** Fetch what the predictor says containers will read, before they read it. */
  prefetch: boolean;
  /** The predictor prefetches follow (predict/predictors.ts). */
  predictor: string;
  /** Compressed bytes one prefetch plan (a pull, a container start) may fetch. */
  prefetchBudget: number;
  /** Predicted files queued together per layer. */
  prefetchGranularity: number;
  /** The cluster manifest's reference in a registry, read at start and every few minutes. */
  clusterManifest: string | undefined;
  /** Digests of profile artifacts whose layer indexes are trusted without entry checks. */
  trustedArtifacts: string[];
  /** host:port to serve the cache on, read-only, over the OCI blob API (peer/blob-server.ts); none by default. */
  serveCache: string | undefined;
  /** Other nodes' caches (their serve-cache), asked before the registry on a miss. */
  peers: string[];
  /** After a container ends, add access points to gzip layer indexes where it began reading (remote/index-refiner.ts). */
  refineIndexes: boolean;
}

export type ServeFlags = { [K in keyof ServeConfig]?: ServeConfig[K] extends number ? string | number : ServeConfig[K] };

export const DEFAULT_ROOT = "/var/lib/augur";
export const DEFAULT_SOCKET = "/run/augur/augur.sock";
export const DEFAULT_CACHE_SIZE = 20 * 1024 ** 3;
export const DEFAULT_TRACE_SIZE = 256 * 1024 ** 2;
export const DEFAULT_PREDICTOR = "replay";
export const DEFAULT_PREFETCH_BUDGET = 1024 ** 3;
export const DEFAULT_PREFETCH_GRANULARITY = 16;
export const DEFAULT_CONTAINERD_ADDRESS = "/run/containerd/containerd.sock";

/** TOML key -> setting, and what kind of value it takes. */
const KEYS: Record<string, { key: keyof ServeConfig; type: "string" | "boolean" | "size" | "count" | "digests" | "urls" }> = {
  root: { key: "root", type: "string" },
  socket: { key: "socket", type: "string" },
  api: { key: "api", type: "string" },
  lazy: { key: "lazy", type: "boolean" },
  native_copy: { key: "nativeCopy", type: "boolean" },
  native_copy_size: { key: "nativeCopySize", type: "size" },
  hosts_dir: { key: "hostsDir", type: "string" },
  cache_dir: { key: "cacheDir", type: "string" },
  cache_size: { key: "cacheSize", type: "size" },
  docker_config: { key: "dockerConfig", type: "string" },
  trace: { key: "trace", type: "boolean" },
  trace_size: { key: "traceSize", type: "size" },
  containerd_address: { key: "containerdAddress", type: "string" },
  prefetch: { key: "prefetch", type: "boolean" },
  predictor: { key: "predictor", type: "string" },
  prefetch_budget: { key: "prefetchBudget", type: "size" },
  prefetch_granularity: { key: "prefetchGranularity", type: "count" },
  cluster_manifest: { key: "clusterManifest", type: "string" },
  trusted_artifacts: { key: "trustedArtifacts", type: "digests" },
  refine_indexes: { key: "refineIndexes", type: "boolean" },
  serve_cache: { key: "serveCache", type: "string" },
  peers: { key: "peers", type: "urls" },
};

/** Every key a config file may hold (scripts/host/config.toml shows each with its default). */
export const CONFIG_FILE_KEYS: readonly string[] = Object.keys(KEYS);

export function loadConfig(flags: ServeFlags, configFile?: string): ServeConfig {
  const file = configFile ? readConfigFile(configFile) : {};
  const root = flags.root ?? file.root ?? DEFAULT_ROOT;
  const size = flags.cacheSize ?? file.cacheSize;
  const nativeSize = flags.nativeCopySize ?? file.nativeCopySize;
  const traceSize = flags.traceSize ?? file.traceSize;
  const budget = flags.prefetchBudget ?? file.prefetchBudget;
  const granularity = flags.prefetchGranularity ?? file.prefetchGranularity;
  const cacheSize = size === undefined ? DEFAULT_CACHE_SIZE : parseSize(size, "cache size");
  return {
    root,
    socket: flags.socket ?? file.socket ?? DEFAULT_SOCKET,
    api: flags.api ?? file.api ?? join(root, "api.sock"),
    lazy: flags.lazy ?? file.lazy ?? true,
    nativeCopy: flags.nativeCopy ?? file.nativeCopy ?? true,
    refineIndexes: flags.refineIndexes ?? file.refineIndexes ?? true,
    hostsDir: flags.hostsDir ?? file.hostsDir ?? DEFAULT_HOSTS_DIR,
    cacheDir: flags.cacheDir ?? file.cacheDir ?? join(root, "cache"),
    cacheSize,
    nativeCopySize: nativeSize === undefined ? cacheSize : parseSize(nativeSize, "native copy size"),
    dockerConfig: flags.dockerConfig ?? file.dockerConfig,
    trace: flags.trace ?? file.trace ?? true,
    traceSize: traceSize === undefined ? DEFAULT_TRACE_SIZE : parseSize(traceSize, "trace size"),
    containerdAddress: flags.containerdAddress ?? file.containerdAddress ?? DEFAULT_CONTAINERD_ADDRESS,
    prefetch: flags.prefetch ?? file.prefetch ?? true,
    predictor: flags.predictor ?? file.predictor ?? DEFAULT_PREDICTOR,
    prefetchBudget: budget === undefined ? DEFAULT_PREFETCH_BUDGET : parseSize(budget, "prefetch budget"),
    prefetchGranularity: granularity === undefined ? DEFAULT_PREFETCH_GRANULARITY : parseCount(granularity, "prefetch granularity"),
    clusterManifest: flags.clusterManifest ?? file.clusterManifest,
    trustedArtifacts: checkDigests(flags.trustedArtifacts ?? file.trustedArtifacts ?? [], "trusted artifact"),
    serveCache: checkListen(flags.serveCache ?? file.serveCache),
    peers: (flags.peers ?? file.peers ?? []).map(normalizePeerUrl),
  };
}

const UNITS: Record<string, number> = { "": 1, b: 1, k: 1024, kb: 1024, kib: 1024, m: 1024 ** 2, mb: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gb: 1024 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1024 ** 4, tib: 1024 ** 4 };

/** "10GiB", "512M", "1048576" or a number of bytes. */
export function parseSize(v: string | number, what: string): number {
  if (typeof v === "number") {
    if (Number.isSafeInteger(v) && v > 0) return v;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
    const unit = m ? UNITS[(m[2] as string).toLowerCase()] : undefined;
    if (m && unit !== undefined && Number(m[1]) * unit >= 1) return Math.floor(Number(m[1]) * unit);
  }
  throw new InvalidArgumentError(`${what} ${JSON.stringify(v)} is not a size (bytes, or a number with K, M, G or T, e.g. "10GiB")`);
}

function checkListen(addr: string | undefined): string | undefined {
  if (addr !== undefined) parseListenAddress(addr);
  return addr;
}

function checkDigests(v: string[], what: string): string[] {
  for (const d of v) if (!/^sha256:[0-9a-f]{64}$/.test(d)) throw new InvalidArgumentError(`${what} ${JSON.stringify(d)} is not a sha256 digest`);
  return v;
}

/** A whole number of at least 1 ("16" or 16). */
export function parseCount(v: string | number, what: string): number {
  const n = typeof v === "number" ? v : /^\s*\d+\s*$/.test(v) ? Number(v) : NaN;
  if (Number.isSafeInteger(n) && n >= 1) return n;
  throw new InvalidArgumentError(`${what} ${JSON.stringify(v)} is not a whole number of at least 1`);
}

function readConfigFile(path: string): ServeFlags {
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InvalidArgumentError(`cannot read config file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc)) {
    const spec = KEYS[k];
    if (!spec) throw new InvalidArgumentError(`config file ${path}: unknown setting ${JSON.stringify(k)} (known: ${Object.keys(KEYS).join(", ")})`);
    if (spec.type === "boolean") {
      if (typeof v !== "boolean") throw new InvalidArgumentError(`config file ${path}: ${k} must be true or false`);
    } else if (spec.type === "urls") {
      if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw new InvalidArgumentError(`config file ${path}: ${k} must be a list of URLs`);
    } else if (spec.type === "digests") {
      if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) throw new InvalidArgumentError(`config file ${path}: ${k} must be a list of digests`);
      checkDigests(v as string[], `config file ${path}: ${k}:`);
    } else if (spec.type === "count") {
      if (typeof v !== "string" && typeof v !== "number") throw new InvalidArgumentError(`config file ${path}: ${k} must be a whole number`);
      parseCount(v, `config file ${path}: ${k}`);
    } else if (spec.type === "size") {
      if (typeof v !== "string" && typeof v !== "number") throw new InvalidArgumentError(`config file ${path}: ${k} must be a size such as "10GiB"`);
      parseSize(v, `config file ${path}: ${k}`);
    } else if (typeof v !== "string" || v === "") {
      throw new InvalidArgumentError(`config file ${path}: ${k} must be a non-empty string`);
    }
    out[spec.key] = v;
  }
  return out;
}
