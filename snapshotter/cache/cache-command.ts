// `augur cache status|ls|evict|verify|gc`: works on the cache directory
// directly, through the same ledger every running augur on it shares, so it
// runs beside them (or with none running) and sees what they all hold.
import { existsSync, mkdirSync } from "node:fs";
import { parseArgs } from "node:util";
import { loadConfig, type ServeConfig } from "../config/config.js";
import { InvalidArgumentError, NotFoundError, UnavailableError } from "../errdefs/errors.js";
import { normalizePeerUrl } from "../peer/peers.js";
import { syncFromPeer, type SyncedLayer } from "../peer/peer-sync.js";
import { RegistryClient } from "../registry/registry-client.js";
import { LayerCache } from "./layer-cache.js";

export const CACHE_USAGE = `  augur cache status [--config FILE] [--root DIR] [--cache-dir DIR] [--json]
      The cache directory as every augur on it shares it: bound, bytes and
      files by kind, live augurs using it, layers their mounts pin.
  augur cache ls [...] [--json]
      Layers cached, most recently used first: whole blob or chunks, index,
      bytes, last use, pinned.
  augur cache evict [...] DIGEST
      Remove everything cached for a layer (refused while a mount needs it).
  augur cache verify [...]
      Check every cached file against its name (blob digests, chunk sizes);
      remove what fails (it is fetched again when needed).
  augur cache sync --from PEER [--plain-http] [--hosts-dir DIR] [...] IMAGE...
      Copy what a peer's cache (its augur serve --serve-cache) holds of the
      images' layers, within this cache's bound: whole blobs checked against
      their digest, chunks checked when first read.
  augur cache gc [...] [--cache-size N]
      Remove files of writers that are gone and empty directories, then
      evict least recently used data down to the bound.
`;

export async function cacheCommand(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      config: { type: "string" }, root: { type: "string" }, "cache-dir": { type: "string" }, "cache-size": { type: "string" },
      json: { type: "boolean" }, from: { type: "string" }, "plain-http": { type: "boolean" }, "hosts-dir": { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  const config = loadConfig({ root: values.root, cacheDir: values["cache-dir"], cacheSize: values["cache-size"] }, values.config);
  if (!["status", "ls", "evict", "verify", "gc", "sync"].includes(sub ?? "")) {
    throw new InvalidArgumentError(`unknown cache command ${JSON.stringify(sub ?? "")}; use status, ls, evict, verify, gc or sync`);
  }
  if (sub === "sync") return sync(config, values, positionals, out);
  if (sub !== "evict" && positionals.length) throw new InvalidArgumentError(`augur cache ${sub} takes no arguments, got ${positionals.join(" ")}`);
  if (!existsSync(config.cacheDir)) throw new NotFoundError(`cache directory ${config.cacheDir} does not exist (give --cache-dir, --root or --config as augur serve has them)`);
  // only gc enforces the bound; the others look without changing anything
  const cache = new LayerCache(config.cacheDir, config.cacheSize, { evict: false });
  const print = (v: unknown, text: string): void => out(values.json ? `${JSON.stringify(v, null, 2)}\n` : text);
  try {
    switch (sub) {
      case "status": {
        const s = cache.status();
        const { hits: _h, misses: _m, hitRate: _r, evictions: _e, pinnedLayers: _p, ...dir } = s;
        return print(dir, [
          `directory   ${s.dir}`,
          `bound       ${mb(s.maxBytes)}`,
          `used        ${mb(s.usedBytes)} (${pct(s.usedBytes, s.maxBytes)})`,
          `blobs       ${s.files.blobs} files, ${mb(s.bytes.blobs)}`,
          `chunks      ${s.files.chunks} files, ${mb(s.bytes.chunks)}`,
          `indexes     ${s.files.indexes} files, ${mb(s.bytes.indexes)}`,
          `augurs      ${s.instances - 1} running on it`,
          `pinned      ${s.directoryPinnedLayers.length ? s.directoryPinnedLayers.join(" ") : "none"}`,
          "",
        ].join("\n"));
      }
      case "ls": {
        const layers = cache.layers();
        const rows = layers.map((l) =>
          [l.layer.slice(0, 19), l.blob ? "blob" : `${l.chunks} chunks`, l.index ? "index" : "-", mb(l.bytes), l.lastUsed.toISOString().replace(/\.\d+Z$/, "Z"), l.pinned ? "pinned" : ""].join("\t"),
        );
        return print(layers, `${["LAYER", "DATA", "INDEX", "BYTES", "LAST USED", ""].join("\t")}\n${rows.map((r) => `${r}\n`).join("")}`);
      }
      case "evict": {
        if (positionals.length !== 1) throw new InvalidArgumentError("augur cache evict takes one layer digest (augur cache ls lists them)");
        const digest = positionals[0] as string;
        const bytes = await cache.evictLayer(digest);
        if (bytes === 0) throw new NotFoundError(`layer ${digest} is not in the cache`);
        return print({ layer: digest, bytes }, `evicted ${digest}: ${mb(bytes)}\n`);
      }
      case "verify": {
        const r = await cache.verify();
        return print(r, `checked ${r.checked} files; ${r.removed.length ? `removed ${r.removed.length} that failed: ${r.removed.join(" ")}` : "all good"}\n`);
      }
      default: {
        const r = cache.gc();
        return print(r, `removed ${r.wip} abandoned partial files and ${r.dirs} empty directories; evicted ${r.evicted} files to fit ${mb(cache.maxBytes)}\n`);
      }
    }
  } finally {
    cache.close();
  }
}

async function sync(
  config: ServeConfig, values: { from?: string | undefined; "plain-http"?: boolean | undefined; "hosts-dir"?: string | undefined; json?: boolean | undefined },
  images: string[], out: (s: string) => void,
): Promise<void> {
  if (!values.from) throw new InvalidArgumentError("augur cache sync needs --from PEER (another node's --serve-cache address, e.g. http://10.0.0.2:5050)");
  if (images.length === 0) throw new InvalidArgumentError("augur cache sync needs at least one IMAGE: a peer lists nothing, it serves content by digest");
  const peer = normalizePeerUrl(values.from);
  mkdirSync(config.cacheDir, { recursive: true, mode: 0o700 });
  const registry = new RegistryClient({ plainHttp: values["plain-http"] ?? false, hostsDir: values["hosts-dir"] ?? config.hostsDir, ...(config.dockerConfig ? { dockerConfig: config.dockerConfig } : {}) });
  const cache = new LayerCache(config.cacheDir, config.cacheSize);
  const report: { image: string; layers: SyncedLayer[] }[] = [];
  try {
    for (const image of images) {
      const resolved = await registry.resolve(image);
      report.push({ image, layers: await syncFromPeer(cache, peer, resolved.reference.repository, resolved.layers) });
    }
  } finally {
    cache.close();
    await registry.close();
  }
  const lines = report.flatMap((r) => [`${r.image}:`, ...r.layers.map((l) => `  ${l.digest.slice(0, 19)}  ${l.result}${l.bytes ? ` ${mb(l.bytes)}` : ""}${l.error ? `: ${l.error}` : ""}`)]);
  out(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${lines.join("\n")}\n`);
  const failed = report.flatMap((r) => r.layers).filter((l) => l.result === "failed");
  if (failed.length) throw new UnavailableError(`${failed.length} layer(s) could not be copied from ${peer}`);
}

const mb = (n: number): string => (n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)}GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)}MiB` : n >= 1024 ? `${(n / 1024).toFixed(1)}KiB` : `${n}B`);
const pct = (a: number, b: number): string => `${((100 * a) / b).toFixed(1)}%`;
