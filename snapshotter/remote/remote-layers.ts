// The lazily mounted layers of one augur: each is a FUSE mount of a LayerView
// at a snapshot's `fs` directory. The overlay snapshotter asks this module to
// describe a layer from Prepare's labels, mount it, and unmount it again.
import pLimit from "p-limit";
import type { CachedBlob } from "../fetch/cached-blob.js";
import type { Peers } from "../peer/peers.js";
import type { FetchPlan, FetchQueue } from "../fetch/fetch-queue.js";
import type { FetchStats } from "../fetch/fetch-stats.js";
import type { LayerCache } from "../cache/layer-cache.js";
import { errorMessage } from "../errdefs/errors.js";
import { firstDifference } from "../layer/entry-check.js";
import { EStargzLayerIndex } from "../layer/estargz.js";
import { TarLayerIndex } from "../layer/tar-layer.js";
import type { LayerIndex } from "../layer/layer-index.js";
import type { LayerView } from "../layer/layer-view.js";
import type { RegistryClient, ResolvedImage } from "../registry/registry-client.js";
import type { LayerSource } from "../source/labels.js";
import { logger } from "../util/logging.js";
import { DeferredView } from "./deferred-view.js";
import { LayerOpener, type LayerFormat, type Refinement, type RemoteIndexSource } from "./layer-opener.js";
import type { ReadStart } from "../layer/access-points.js";
import { specFor, type RemoteLayerSpec } from "./remote-layer.js";
import { StreamOrder } from "./stream-order.js";
import { IndexLoads } from "./index-loads.js";

const log = logger("remote");
/** A resolved manifest is reused for the other layers of the same pull. */
const MANIFEST_TTL_MS = 60_000;
const FAILURE_TTL_MS = 10_000;
/** A layer served from an index made elsewhere is checked against its whole blob this long after it opened. */
export const WHOLE_CHECK_DELAY_MS = Number(process.env.AUGUR_WHOLE_CHECK_DELAY_MS ?? 10_000);

/** Mounts a view at a directory (the FUSE filesystem); returns how to unmount it. */
export type LayerMounter = (dir: string, view: LayerView) => Promise<{ unmount(): Promise<void> }>;

export interface RemoteLayersOptions {
  registry: RegistryClient;
  cache: LayerCache;
  /** The fetch scheduler every layer's fetches ahead of reads go through. */
  queue: FetchQueue;
  /** Hits and misses of reads, over every layer. */
  stats: FetchStats;
  /** The order first-contact streams take (default: all at once). */
  streams?: StreamOrder;
  /** The order cached indexes load in (default: Prepared first, then as they come). */
  indexLoads?: IndexLoads;
  /** Indexes of plain layers from the registry (manifest/profile-source.ts). */
  remoteIndex?: RemoteIndexSource;
  /** Other nodes' caches, asked before the registry on a miss. */
  peers?: Peers;
  mount: LayerMounter;
  platform?: string;
  /** Told once per pull, at the image's first Prepare: what is being pulled. */
  onImage?: (image: PulledImage) => void;
  /** Told when a layer's index (TOC or seekable index) is ready for reads and prefetches. */
  onLayerReady?: (digest: string) => void;
}

/** An image whose layers containerd is preparing. */
export interface PulledImage {
  ref: string;
  /** Manifest digest. */
  manifest: string;
  /** Layer digests, bottom first. */
  layers: string[];
  /** The image manifest's annotations. */
  annotations: Record<string, string>;
}

/** A layer opened before its Prepare came (see #openRest). */
interface EarlyOpen {
  blob: CachedBlob;
  index: Promise<LayerIndex>;
}

interface MountedRemoteLayer {
  spec: RemoteLayerSpec;
  format: LayerFormat;
  view: DeferredView;
  blob: CachedBlob;
  unmount(): Promise<void>;
  unpin(): void;
}

export interface LayerProgress {
  layer: string;
  /** streaming: a first contact, the whole blob on its way; fetching: read by range; complete: all here. */
  state: "streaming" | "fetching" | "complete";
  fetchedBytes: number;
  totalBytes: number;
}

export interface RemoteLayerStatus {
  dir: string;
  layer: string;
  format: LayerFormat;
  ready: boolean;
  fetchedBytes: number;
  /** Compressed bytes reads found fetched ahead, and had to fetch themselves. */
  readHitBytes: number;
  readMissBytes: number;
  /** Compressed bytes fetched ahead of reads (predicted and read-ahead). */
  aheadBytes: number;
  /** Of those, fetched for a prediction, and used by a read since. */
  predictedBytes: number;
  predictedUsedBytes: number;
}

export class RemoteLayers {
  readonly #opts: RemoteLayersOptions;
  readonly #opener: LayerOpener;
  readonly #mounted = new Map<string, MountedRemoteLayer>();
  readonly #manifests = new Map<string, { at: number; image: Promise<ResolvedImage> }>();
  readonly #early = new Map<string, EarlyOpen>();
  /** The image's other layers, to open early once the first one's mount has begun its own open. */
  readonly #rest = new Map<string, RemoteLayerSpec[]>();
  /** Manifests whose layers were opened early, and when. */
  readonly #openedFor = new Map<string, number>();
  /** Indexes ready for reads and prefetches, by layer digest. */
  readonly #ready = new Map<string, LayerIndex>();

  constructor(opts: RemoteLayersOptions) {
    this.#opts = opts;
    this.#opener = new LayerOpener(opts.registry, opts.cache, opts.queue, opts.stats, opts.streams ?? new StreamOrder(), opts.indexLoads ?? new IndexLoads(), opts.remoteIndex, opts.peers);
  }

  /** Works out how to serve a layer; throws (with the reason) when it cannot be taken over. */
  async describe(source: LayerSource): Promise<RemoteLayerSpec> {
    const image = await this.#resolve(source.imageRef);
    const spec = specFor(source, image);
    this.#openRest(source, image);
    return spec;
  }

  /**
   * containerd prepares an image's layers one after another, each waiting for
   * the one before. The image's other eStargz layers, and those whose index
   * is cached, are opened as soon as the first layer's mount has begun to
   * open it (its index loads first, index-loads.ts), so their Prepares find them ready and their
   * predicted files can be fetched from the start of the pull (two round
   * trips and a TOC parse, or an index load, per layer off the pull's path).
   * Opens no Prepare claims within MANIFEST_TTL_MS are dropped.
   */
  #openRest(source: LayerSource, image: ResolvedImage): void {
    const now = Date.now();
    for (const [manifest, at] of this.#openedFor) if (now - at > MANIFEST_TTL_MS) this.#openedFor.delete(manifest);
    if (this.#openedFor.has(image.digest)) return; // once per pull, not once per layer
    this.#openedFor.set(image.digest, now);
    this.#opts.onImage?.({ ref: source.imageRef, manifest: image.digest, layers: image.layers.map((l) => l.digest), annotations: image.manifest.annotations ?? {} });
    const mounted = new Set([...this.#mounted.values()].map((m) => m.spec.layerDigest));
    const rest: RemoteLayerSpec[] = [];
    for (const desc of image.layers) {
      if (desc.digest === source.layerDigest || this.#early.has(desc.digest) || mounted.has(desc.digest)) continue;
      let spec: RemoteLayerSpec;
      try {
        spec = specFor({ ...source, layerDigest: desc.digest, tocDigest: undefined }, image);
      } catch {
        continue; // its own Prepare reports why
      }
      rest.push(spec);
    }
    // opened once the prepared layer's own open has begun (mount), so its index loads first
    this.#rest.set(source.layerDigest, rest);
    setTimeout(() => this.#rest.get(source.layerDigest) === rest && this.#rest.delete(source.layerDigest), MANIFEST_TTL_MS).unref(); // its mount never came
  }

  #openRestOf(layer: string): void {
    const rest = this.#rest.get(layer);
    this.#rest.delete(layer);
    for (const spec of rest ?? []) void this.#openEarly(spec);
  }

  /**
   * Opens a layer before its Prepare when that costs no stream: an eStargz
   * TOC (two requests) or an index in the cache (read from disk), so
   * predicted files can be fetched before containerd gets to the layer.
   */
  async #openEarly(spec: RemoteLayerSpec): Promise<void> {
    const format = await this.#opener.formatOf(spec);
    if (format !== "estargz" && format !== "indexed") return;
    // its Prepare may have come meanwhile
    if (this.#early.has(spec.layerDigest) || [...this.#mounted.values()].some((m) => m.spec.layerDigest === spec.layerDigest)) return;
    const blob = this.#opener.blobOf(spec);
    const index = this.#opener.open(spec, blob, { early: true });
    const early = { blob, index };
    this.#early.set(spec.layerDigest, early);
    this.#noteReady(spec.layerDigest, index);
    const drop = (): void => {
      if (this.#early.get(spec.layerDigest) !== early) return;
      this.#early.delete(spec.layerDigest);
      if (![...this.#mounted.values()].some((m) => m.spec.layerDigest === spec.layerDigest)) this.#ready.delete(spec.layerDigest);
    };
    index.catch(drop);
    setTimeout(drop, MANIFEST_TTL_MS).unref();
  }

  #noteReady(digest: string, index: Promise<LayerIndex>): void {
    index.then(
      (i) => {
        if (this.#ready.get(digest) === i) return;
        this.#ready.set(digest, i);
        this.#opts.onLayerReady?.(digest);
      },
      () => undefined, // reported by whoever opened it
    );
  }

  /**
   * A layer served from an index made elsewhere is checked against its whole
   * blob once the start-up rush is over: streamed (into the cache), indexed,
   * compared. If the index lied (an entry left out, a whiteout hidden), it is
   * dropped; either way the layer is served from the index built from the blob.
   */
  #checkWholeLater(dir: string, spec: RemoteLayerSpec, view: DeferredView, index: LayerIndex): void {
    if (!(index instanceof TarLayerIndex) || !index.untrusted) return;
    const timer = setTimeout(() => {
      const m = this.#mounted.get(dir);
      if (!m || view.ready !== index) return; // unmounted, or already dropped
      void this.#opener.rebuild(spec).then(
        (built) => {
          const lie = firstDifference(index.records, built.entries);
          if (lie) log.warn("layer index from the registry did not match the whole layer; dropped", { layer: spec.layerDigest, difference: lie });
          else log.info("layer index from the registry matched the whole layer", { layer: spec.layerDigest });
          view.replace(new TarLayerIndex(built, m.blob));
        },
        (err: unknown) => log.warn("could not check the registry's layer index against the whole layer; entries stay checked one by one", { layer: spec.layerDigest, error: errorMessage(err) }),
      );
    }, WHOLE_CHECK_DELAY_MS);
    timer.unref();
  }

  /**
   * Fetches the whole of a mounted layer in the background (the seed's
   * `/prefetch/layer/{digest}`), at the "later" priority: reads and predicted
   * files go first. Returns its progress; undefined when it is not mounted here.
   */
  async prefetchLayer(digest: string, plan?: FetchPlan): Promise<LayerProgress | undefined> {
    const progress = await this.layerProgress(digest);
    if (!progress || progress.state !== "fetching") return progress;
    this.#ready.get(digest)?.fetchAll({ priority: "later", ...(plan ? { plan } : {}) });
    return progress;
  }

  /** How much of a mounted layer is here; undefined when it is not mounted. */
  async layerProgress(digest: string): Promise<LayerProgress | undefined> {
    const m = [...this.#mounted.values()].find((x) => x.spec.layerDigest === digest);
    if (!m) return undefined;
    const total = m.spec.size;
    if (await this.#opts.cache.blobPath(digest)) return { layer: digest, state: "complete", fetchedBytes: total, totalBytes: total };
    const index = m.view.ready;
    if (!index) return { layer: digest, state: "streaming", fetchedBytes: m.blob.fetchedBytes, totalBytes: total };
    const p = index.progress();
    return { layer: digest, state: p.fetchedBytes >= p.totalBytes ? "complete" : "fetching", ...p };
  }

  /** The layer's index, if it is open and ready (mounted, or opened early for a pull). */
  /** Access points where `reads` began, in the layer's cached index (LayerOpener.refineIndex). */
  refineIndex(digest: string, reads: readonly ReadStart[], signal?: AbortSignal): Promise<Refinement> {
    return this.#opener.refineIndex(digest, reads, signal);
  }

  readyIndex(digest: string): LayerIndex | undefined {
    return this.#ready.get(digest);
  }

  /** Mounts the layer at `dir`. Returns once the mount is up; a first-contact layer keeps streaming. */
  async mount(dir: string, spec: RemoteLayerSpec): Promise<void> {
    if (this.#mounted.has(dir)) return;
    const format = await this.#opener.formatOf(spec);
    const early = this.#early.get(spec.layerDigest);
    this.#early.delete(spec.layerDigest);
    if (early) this.#opener.hurry(spec.layerDigest);
    const blob = early?.blob ?? this.#opener.blobOf(spec);
    const unpin = this.#opts.cache.pin(spec.layerDigest);
    // The first attempt only; a failed early open is tried again at once, later failures by the next read.
    let opened = early?.index.catch(() => this.#opener.open(spec, blob));
    const view = new DeferredView(
      spec.layerDigest,
      () => {
        const attempt = opened ?? this.#opener.open(spec, blob);
        opened = undefined;
        return attempt;
      },
      () => this.#opener.open(spec, blob, { remote: false }),
    );
    try {
      // eStargz opens with two small requests (footer, TOC): do it now so a
      // broken layer falls back to a normal pull. An index in the cache loads
      // in the background (a bad one is rebuilt by streaming), and a first
      // contact streams on, so containerd's next Prepare need not wait.
      const opening = view.start();
      // Pinned while it opens (a first contact indexes the blob it streams into the cache); once
      // open, whatever eviction takes is fetched again on the next read, and the bound holds.
      opening.then(unpin, () => undefined);
      this.#openRestOf(spec.layerDigest);
      this.#noteReady(spec.layerDigest, opening);
      opening.then((index) => this.#checkWholeLater(dir, spec, view, index), () => undefined);
      if (format === "estargz") await opening;
      else opening.catch((err: unknown) => log.error("layer could not be opened; the next read retries", { layer: spec.layerDigest, error: errorMessage(err) }));
      const mounted = await this.#opts.mount(dir, view);
      this.#mounted.set(dir, { spec, format, view, blob, unmount: () => mounted.unmount(), unpin });
      log.info("layer mounted lazily", { layer: spec.layerDigest, format, dir });
      if (format === "estargz") void this.#prefetchLandmark(view, spec);
    } catch (err) {
      unpin();
      throw err;
    }
  }

  isMounted(dir: string): boolean {
    return this.#mounted.has(dir);
  }

  async unmount(dir: string): Promise<void> {
    const m = this.#mounted.get(dir);
    if (!m) return;
    this.#mounted.delete(dir);
    m.unpin();
    if (![...this.#mounted.values()].some((o) => o.spec.layerDigest === m.spec.layerDigest)) this.#ready.delete(m.spec.layerDigest);
    await m.unmount();
  }

  /**
   * The cached whole blob of a layer mounted at `dir`, once its index is
   * complete (the blob matched its digest); undefined for layers read by range.
   */
  async completeBlob(dir: string): Promise<{ path: string; mediaType: string; layer: string; release(): void } | undefined> {
    const m = this.#mounted.get(dir);
    if (!m || m.spec.tocDigest) return undefined;
    await m.view.start();
    // kept from eviction until the caller is done with the file (a native copy unpacks it)
    const release = this.#opts.cache.pin(m.spec.layerDigest);
    const path = await this.#opts.cache.blobPath(m.spec.layerDigest);
    if (!path) release();
    return path ? { path, mediaType: m.spec.mediaType, layer: m.spec.layerDigest, release } : undefined;
  }

  /** Owner of the layer's root directory (waits for a first-contact index). */
  async rootOwner(dir: string): Promise<{ uid: number; gid: number } | undefined> {
    const root = await this.#mounted.get(dir)?.view.getAttr("");
    return root ? { uid: root.uid, gid: root.gid } : undefined;
  }

  /** Unpacked size and inode count, once the layer's index is known. */
  usage(dir: string): { size: number; inodes: number } | undefined {
    const index = this.#mounted.get(dir)?.view.ready;
    if (!index) return undefined;
    let size = 0;
    let inodes = 0;
    const seen = new Set<number>();
    for (const e of index.entries()) {
      if (seen.has(e.ino)) continue;
      seen.add(e.ino);
      inodes++;
      size += e.type === "file" ? e.size : 0;
    }
    return { size, inodes };
  }

  status(): RemoteLayerStatus[] {
    return [...this.#mounted.entries()].map(([dir, m]) => ({
      dir, layer: m.spec.layerDigest, ready: m.view.ready !== undefined, fetchedBytes: m.blob.fetchedBytes,
      format: m.view.ready instanceof TarLayerIndex && m.view.ready.untrusted ? "registry-index" : m.format,
      ...layerFigures(m.view.ready?.fetchStats),
    }));
  }

  async close(): Promise<void> {
    for (const dir of [...this.#mounted.keys()]) {
      try {
        await this.unmount(dir);
      } catch (err) {
        log.warn("could not unmount layer", { dir, error: errorMessage(err) });
      }
    }
    await this.#opts.registry.close();
  }

  #resolve(ref: string): Promise<ResolvedImage> {
    const hit = this.#manifests.get(ref);
    if (hit && Date.now() - hit.at < MANIFEST_TTL_MS) return hit.image; // a failure is dropped sooner, by its timer
    const image = this.#opts.registry.resolve(ref, this.#opts.platform);
    this.#manifests.set(ref, { at: Date.now(), image });
    // A failure is remembered briefly, so the other layers of the same pull fall back at once.
    image.catch(() => setTimeout(() => this.#manifests.get(ref)?.image === image && this.#manifests.delete(ref), FAILURE_TTL_MS).unref());
    return image;
  }

  /** Fetches the files an eStargz builder put before its prefetch landmark, a few at a time. */
  async #prefetchLandmark(view: DeferredView, spec: RemoteLayerSpec): Promise<void> {
    const index = view.ready;
    if (!(index instanceof EStargzLayerIndex) || index.prefetch.entries.length === 0) return;
    const started = Date.now();
    const limit = pLimit(4);
    try {
      await Promise.all(index.prefetch.entries.map((path) => limit(async () => {
        const size = index.getAttr(path)?.size ?? 0;
        if (size > 0) await index.readFile(path, 0, size);
      })));
      log.info("prefetched landmark files", { layer: spec.layerDigest, files: index.prefetch.entries.length, ms: Date.now() - started });
    } catch (err) {
      log.warn("prefetch of landmark files failed; reads fetch on demand", { layer: spec.layerDigest, error: errorMessage(err) });
    }
  }
}

function layerFigures(st: FetchStats | undefined): Pick<RemoteLayerStatus, "readHitBytes" | "readMissBytes" | "aheadBytes" | "predictedBytes" | "predictedUsedBytes"> {
  if (!st) return { readHitBytes: 0, readMissBytes: 0, aheadBytes: 0, predictedBytes: 0, predictedUsedBytes: 0 };
  const a = st.aheadBytes;
  return {
    readHitBytes: st.readHitBytes, readMissBytes: st.readMissBytes, aheadBytes: a.soon + a.later + a.speculative,
    predictedBytes: a.soon + a.later, predictedUsedBytes: st.aheadUsedBy.soon + st.aheadUsedBy.later,
  };
}
