// `augur manifest build|show|push|pull`: the cluster manifest from this node's
// traces and indexes, to a file or into a registry as an OCI artifact, and
// back. Reads --root directly (traces, the cache's indexes), so it works
// whether or not `augur serve` is running.
import { createReadStream, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { LayerCache } from "../cache/layer-cache.js";
import { errorMessage, InvalidArgumentError, NotFoundError } from "../errdefs/errors.js";
import { ReadStartLog, type ReadStart } from "../layer/access-points.js";
import { parseTarIndex, tarIndexMediaTypeOf, TAR_INDEX_MEDIA_TYPES } from "../layer/tar-index-codec.js";
import { THIN_GAP, thinIndex } from "../layer/thin-index.js";
import { parseReference, type ImageReference } from "../registry/reference.js";
import { RegistryClient } from "../registry/registry-client.js";
import { parseTrace, type Trace } from "../trace/trace-format.js";
import { listTraceFiles, traceDir } from "../trace/trace-store.js";
import { sha256Digest } from "../util/digest.js";
import { augurVersion } from "../util/version.js";
import { buildClusterManifest, CLUSTER_MANIFEST_MEDIA_TYPE, LIMITS, parseClusterManifest, PROFILE_ARTIFACT_TYPE, type ClusterManifest } from "./cluster-manifest.js";
import { findArtifact, LAYER_ANNOTATION, pullArtifact, pushArtifact, repositoryOf } from "./manifest-artifact.js";

export const MANIFEST_USAGE = `  augur manifest build [--root DIR] [--cache-dir DIR] [--image IMAGE] [--granularity N] [--thin-gap BYTES] [--out FILE]
      The cluster manifest of this node's traces (and the seekable indexes of
      its plain layers): per workload its layer preference, file prefetch list
      and granularity (docs/cluster-manifest.md). --image: only the workloads
      of IMAGE's layers. Written to FILE, or printed.
  augur manifest show FILE|REF [--plain-http]
      A summary of a cluster manifest in a file, at REF (augur manifest push
      --cluster), or attached to the image REF.
  augur manifest push [--root DIR] [--plain-http] [--thin-gap BYTES] IMAGE
      Stores IMAGE's profiles and layer indexes in IMAGE's repository, as an
      OCI artifact whose subject is IMAGE (referrers API, or the sha256-<hex>
      tag schema on registries without it). A gzip layer whose blob is cached
      whole gets a thin index: the access points its traced reads start from,
      and one every --thin-gap bytes (default 4 MiB) of the rest; 0 publishes
      the full index.
  augur manifest push [--root DIR] [--plain-http] --cluster REF
      Stores everything this node knows at REF, for augur serve --cluster-manifest.
  augur manifest pull [--plain-http] [--cluster] REF [--out FILE]
      The cluster manifest attached to image REF (or, with --cluster, at REF).
      Registry hosts and credentials: --hosts-dir DIR, --docker-config FILE.
`;

const DEFAULT_ROOT = "/var/lib/augur";
/** A layer index this big is not published. */
const MAX_INDEX_BYTES = 256 << 20;

interface Opts {
  root: string;
  cacheDir: string;
  granularity: number;
  /** Bytes between the access points a published index keeps where no traced read begins; 0: the full index. */
  thinGap: number;
  plainHttp: boolean;
  hostsDir?: string;
  dockerConfig?: string;
}

export async function manifestCommand(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<void> {
  const [sub, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    options: {
      root: { type: "string" }, "cache-dir": { type: "string" }, image: { type: "string" }, granularity: { type: "string" },
      out: { type: "string" }, "plain-http": { type: "boolean" }, cluster: { type: "boolean" }, "hosts-dir": { type: "string" },
      "docker-config": { type: "string" }, "thin-gap": { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  const root = values.root ?? DEFAULT_ROOT;
  const granularity = Number(values.granularity ?? 16);
  if (!Number.isSafeInteger(granularity) || granularity < 1) throw new InvalidArgumentError(`--granularity ${JSON.stringify(values.granularity)} is not a whole number of at least 1`);
  const thinGap = Number(values["thin-gap"] ?? THIN_GAP);
  if (!Number.isSafeInteger(thinGap) || thinGap < 0) throw new InvalidArgumentError(`--thin-gap ${JSON.stringify(values["thin-gap"])} is not a whole number of bytes (0: publish full indexes)`);
  const o: Opts = {
    root, cacheDir: values["cache-dir"] ?? join(root, "cache"), granularity, thinGap, plainHttp: values["plain-http"] ?? false,
    ...(values["hosts-dir"] ? { hostsDir: values["hosts-dir"] } : {}), ...(values["docker-config"] ? { dockerConfig: values["docker-config"] } : {}),
  };
  const one = (what: string): string => {
    if (positionals.length !== 1) throw new InvalidArgumentError(`augur manifest ${sub} takes ${what}`);
    return positionals[0] as string;
  };
  const client = (): RegistryClient => new RegistryClient({ plainHttp: o.plainHttp, ...(o.hostsDir ? { hostsDir: o.hostsDir } : {}), ...(o.dockerConfig ? { dockerConfig: o.dockerConfig } : {}) });
  switch (sub) {
    case "build": {
      if (positionals.length) throw new InvalidArgumentError("augur manifest build takes no arguments (--image IMAGE for one image)");
      let layers: string[] | undefined;
      if (values.image) {
        const c = client();
        try {
          layers = (await c.resolve(values.image)).layers.map((l) => l.digest);
        } finally {
          await c.close();
        }
      }
      const text = JSON.stringify(await build(o, layers), null, 2) + "\n";
      if (values.out) writeFileSync(values.out, text);
      else out(text);
      return;
    }
    case "show":
      return out(summary(await load(one("one file or reference"), values.cluster ?? false, client)));
    case "push": {
      const ref = one(values.cluster ? "one reference (--cluster REF)" : "one image");
      return out(await push(o, ref, values.cluster ?? false, client()));
    }
    case "pull": {
      const m = await load(one("one reference"), values.cluster ?? false, client, true);
      const text = JSON.stringify(m, null, 2) + "\n";
      if (values.out) {
        writeFileSync(values.out, text);
        out(summary(m));
      } else {
        out(text);
      }
      return;
    }
    default:
      throw new InvalidArgumentError(`unknown manifest command ${JSON.stringify(sub ?? "")}; use build, show, push or pull`);
  }
}

function readTraces(root: string): Trace[] {
  if (!existsSync(root)) throw new NotFoundError(`augur root ${root} does not exist (give --root: where augur serve keeps its state)`);
  const dir = traceDir(root);
  if (!existsSync(dir)) return [];
  return listTraceFiles(dir).map((f) => parseTrace(readFileSync(f.path, "utf8"), f.path));
}

/** The layer's serialised index in the cache, if this node has one. */
function indexBytes(cacheDir: string, layer: string): Buffer | undefined {
  const path = join(cacheDir, "indexes", "sha256", layer.replace(/^sha256:/, ""));
  if (!existsSync(path)) return undefined;
  const bytes = readFileSync(path);
  return bytes.length <= MAX_INDEX_BYTES ? bytes : undefined;
}

/** Where a layer's traced reads began, and what was looked up (access-points.ts). */
function readStarts(traces: readonly Trace[], layer: string): ReadStart[] {
  return traces.flatMap((t) => {
    const log = new ReadStartLog();
    for (const a of t.accesses) {
      if (a.layer !== layer) continue;
      if (a.op === "lookup") log.lookup(a.path);
      else if (a.op === "read" && a.offset !== undefined && a.length !== undefined) log.read(a.path, a.offset, a.length);
    }
    return log.starts;
  });
}

/**
 * The index published for a layer: thin (layer/thin-index.ts) when its blob
 * is cached whole, else the cached index as it is, else (a push) the one the
 * artifact being replaced holds (carriedIndexes). Made once per command.
 */
interface PublishedIndexes {
  (layer: string): Promise<Buffer | undefined>;
  /** What thinning did, for the command's output: full and published bytes, access points kept of all. */
  thinned: { fullBytes: number; bytes: number; spans: number; spansBefore: number; trimmed: number };
  /** Layers whose index came from the replaced artifact. */
  carried: number;
}

/** The indexes of an artifact a push replaces, by layer, and that artifact's digest. */
interface CarriedIndexes {
  from: string | undefined;
  of: Map<string, () => Promise<Buffer | undefined>>;
}

function publishedIndexes(o: Opts, traces: readonly Trace[], carried?: CarriedIndexes): PublishedIndexes {
  const made = new Map<string, Promise<Buffer | undefined>>();
  const thinned = { fullBytes: 0, bytes: 0, spans: 0, spansBefore: 0, trimmed: 0 };
  const out = Object.assign((layer: string): Promise<Buffer | undefined> => {
    let p = made.get(layer);
    if (!p) {
      p = (async () => {
        const full = indexBytes(o.cacheDir, layer);
        if (!full) {
          const theirs = await carried?.of.get(layer)?.();
          if (theirs) out.carried++;
          return theirs;
        }
        const blob = join(o.cacheDir, "blobs", "sha256", layer.replace(/^sha256:/, ""));
        if (o.thinGap === 0 || !existsSync(blob)) return full;
        const thin = await thinIndex(full, () => createReadStream(blob, { highWaterMark: 1 << 20 }), readStarts(traces, layer), o.thinGap);
        if (!thin || thin.bytes.length >= full.length) return full;
        thinned.fullBytes += full.length;
        thinned.bytes += thin.bytes.length;
        thinned.spans += thin.spans;
        thinned.spansBefore += thin.spansBefore;
        thinned.trimmed += thin.trimmed;
        return thin.bytes;
      })();
      made.set(layer, p);
    }
    return p;
  }, { thinned, carried: 0 });
  return out;
}

async function build(o: Opts, layers: string[] | undefined, traces = readTraces(o.root), indexOf = publishedIndexes(o, traces)): Promise<ClusterManifest> {
  if (traces.length === 0) throw new NotFoundError(`no traces under ${traceDir(o.root)}: run some containers with augur serve first`);
  // the layers with an index, published form made first (building the manifest itself is synchronous)
  const candidates = layers ?? [...new Set(traces.flatMap((t) => t.header.layers))];
  const indexes = new Map<string, Buffer>();
  for (const layer of candidates) {
    const bytes = await indexOf(layer);
    if (bytes) indexes.set(layer, bytes);
  }
  const m = buildClusterManifest(traces, {
    granularity: o.granularity, tool: `augur ${augurVersion()}`, ...(layers ? { layers } : {}),
    indexOf: (layer) => {
      const bytes = indexes.get(layer);
      return bytes ? { digest: sha256Digest(bytes), size: bytes.length, mediaType: tarIndexMediaTypeOf(bytes) } : undefined;
    },
  });
  if (m.workloads.length === 0) throw new NotFoundError(layers ? "no traced workload ran on that image's layers" : "no traced workload");
  return m;
}

async function push(o: Opts, ref: string, cluster: boolean, c: RegistryClient): Promise<string> {
  try {
    const target = parseReference(ref);
    let subject;
    let layers: string[] | undefined;
    if (!cluster) {
      const image = await c.resolve(target);
      layers = image.layers.map((l) => l.digest);
      const mediaType = image.manifest.mediaType || "application/vnd.oci.image.manifest.v1+json";
      subject = { mediaType, digest: image.digest, size: image.manifestBytes.length };
    }
    const traces = readTraces(o.root);
    const carried = await carriedIndexes(c, repositoryOf(target), subject ? { subject: subject.digest } : { tag: target.tag ?? "latest" });
    const published = publishedIndexes(o, traces, carried);
    const m = await build(o, layers, traces, published);
    const blobs = [{ mediaType: CLUSTER_MANIFEST_MEDIA_TYPE, bytes: Buffer.from(JSON.stringify(m)) }];
    for (const [layer, info] of Object.entries(m.layers)) {
      const bytes = info.index ? await published(layer) : undefined;
      if (bytes) blobs.push({ mediaType: tarIndexMediaTypeOf(bytes), bytes, annotations: { [LAYER_ANNOTATION]: layer } } as (typeof blobs)[number]);
    }
    const repo: ImageReference = repositoryOf(target);
    const desc = await pushArtifact(c, repo, {
      artifactType: PROFILE_ARTIFACT_TYPE, blobs, ...(subject ? { subject } : {}), ...(cluster ? { tag: target.tag ?? "latest" } : {}),
    });
    await keepPushed(o.cacheDir, blobs.map((b) => b.bytes));
    const where = cluster ? `${repo.host}/${repo.repository}:${target.tag ?? "latest"}` : `${ref} (subject ${subject?.digest})`;
    const indexBytes = blobs.slice(1).reduce((a, b) => a + b.bytes.length, 0);
    const t = published.thinned;
    const thin = t.spansBefore ? `; thinned to ${t.spans} of ${t.spansBefore} access points (${t.trimmed} windows trimmed), ${mb(t.bytes)} instead of ${mb(t.fullBytes)}` : "";
    const kept = published.carried ? `; ${published.carried} carried over from ${carried.from} (this node has not checked those layers whole yet)` : "";
    return `pushed ${desc.digest} to ${where}: ${m.workloads.length} workload profiles from ${m.runs} runs, ${blobs.length - 1} layer indexes (${mb(indexBytes)}${thin}${kept})\n`;
  } finally {
    await c.close();
  }
}

const mb = (n: number): string => `${(n / 1e6).toFixed(1)} MB`;

/**
 * The pushed artifact's blobs, kept in this node's cache as whole blobs: a
 * node that serves its cache (--serve-cache) then hands them to its peers,
 * which take only the artifact's manifest from the registry. A cache that
 * cannot take them costs the peers a registry fetch, not the push.
 */
async function keepPushed(cacheDir: string, blobs: readonly Buffer[]): Promise<void> {
  if (!existsSync(cacheDir)) return;
  try {
    // the bound is the serving augur's to keep: these are a few MB
    const cache = new LayerCache(cacheDir, Number.MAX_SAFE_INTEGER, { evict: false });
    for (const bytes of blobs) await cache.keepBlob(sha256Digest(bytes), bytes);
    cache.close();
  } catch (err) {
    // the push itself is done: this only costs the peers a registry fetch
    process.stderr.write(`augur: the artifact's blobs were not kept in ${cacheDir}: ${errorMessage(err)}\n`);
  }
}

/**
 * The layer indexes of the artifact a push replaces (the image's newest
 * profile, or the cluster manifest at the tag), by layer digest, each fetched
 * when asked for. A node that started an image from such an artifact keeps an
 * index it did not make only once it has checked it against the whole layer;
 * pushing before then must not publish an artifact without them, which as the
 * newest would leave every node after it streaming whole layers. Any failure
 * to read them leaves none (the push goes on with what this node has).
 */
async function carriedIndexes(
  c: RegistryClient,
  repo: ImageReference,
  replaced: { subject: string } | { tag: string },
): Promise<CarriedIndexes> {
  const of = new Map<string, () => Promise<Buffer | undefined>>();
  try {
    const at = "subject" in replaced ? (await findArtifact(c, repo, replaced.subject, PROFILE_ARTIFACT_TYPE))?.descriptor.digest : replaced.tag;
    if (!at) return { from: undefined, of };
    const a = await pullArtifact(c, repo, at);
    if (a.manifest.artifactType !== PROFILE_ARTIFACT_TYPE) return { from: undefined, of };
    for (const d of a.manifest.layers) {
      const layer = d.annotations?.[LAYER_ANNOTATION];
      if (!TAR_INDEX_MEDIA_TYPES.includes(d.mediaType) || !layer) continue;
      of.set(layer, () =>
        a.blob(d, MAX_INDEX_BYTES).then(
          // it must describe the layer it is filed under
          (bytes) => (indexDigestOf(bytes) === layer ? bytes : undefined),
          () => undefined,
        ),
      );
    }
    return { from: a.digest, of };
  } catch {
    return { from: undefined, of };
  }
}

/** The layer digest a serialised index describes, or undefined when it is not one. */
function indexDigestOf(bytes: Buffer): string | undefined {
  try {
    return parseTarIndex(bytes).digest;
  } catch {
    return undefined;
  }
}

async function load(what: string, cluster: boolean, client: () => RegistryClient, pulling = false): Promise<ClusterManifest> {
  if (!pulling && existsSync(what)) return parseClusterManifest(readFileSync(what), what);
  if (!pulling && /^\.{0,2}\/|\.json$/.test(what)) throw new NotFoundError(`no file ${what}`);
  const c = client();
  try {
    const ref = parseReference(what);
    const repo = repositoryOf(ref);
    let tagOrDigest = ref.digest ?? ref.tag ?? "latest";
    if (!cluster) {
      const image = await c.resolve(ref).catch(() => undefined);
      if (image) {
        const found = await findArtifact(c, repo, image.digest, PROFILE_ARTIFACT_TYPE);
        if (!found) throw new NotFoundError(`image ${what} has no augur profile attached (augur manifest push ${what})`);
        tagOrDigest = found.descriptor.digest;
      }
    }
    const a = await pullArtifact(c, repo, tagOrDigest);
    const first = a.manifest.layers[0];
    if (!first || first.mediaType !== CLUSTER_MANIFEST_MEDIA_TYPE) throw new InvalidArgumentError(`${what}: the artifact holds no cluster manifest`);
    return parseClusterManifest(await a.blob(first, LIMITS.bytes), what);
  } finally {
    await c.close();
  }
}

function summary(m: ClusterManifest): string {
  const indexed = Object.values(m.layers).filter((l) => l.index).length;
  const lines = [
    `built by ${m.builtBy.tool} on ${m.builtBy.node} at ${m.builtBy.at}, from ${m.runs} runs`,
    `${m.workloads.length} workloads, ${Object.keys(m.layers).length} layers (${indexed} with a seekable index)`,
    "",
    "SIGNATURE     IMAGE                                     RUNS  FILES  BYTES     GRANULARITY  LAYER PREFERENCE",
  ];
  for (const w of m.workloads) {
    const bytes = w.files.reduce((n, f) => n + f.ranges.reduce((k, [, len]) => k + len, 0), 0);
    lines.push([
      w.signature.slice(7, 19), (w.image ?? "-").padEnd(40).slice(0, 40), String(w.runs).padEnd(4), String(w.files.length).padEnd(5),
      `${(bytes / 1e6).toFixed(1)}MB`.padEnd(8), String(w.granularity).padEnd(11), w.layerPreference.map((l) => l.slice(7, 19)).join(" "),
    ].join("  "));
  }
  return lines.join("\n") + "\n";
}
