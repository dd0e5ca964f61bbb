// `augur pull`: containerd's client Pull with unpack, as stargz-snapshotter's
// `ctr-remote images rpull` drives it. Under a lease it resolves the image,
// stores index, manifest and config in containerd's content store with the GC
// labels containerd's client sets, unpacks layer by layer through the
// snapshotter with the remote-snapshot labels (a snapshotter that takes a
// layer over answers ALREADY_EXISTS; otherwise the layer is fetched and
// applied with containerd's diff service), labels the config with the top
// snapshot and creates or updates the image record.
import pLimit from "p-limit";
import { AugurError, FailedPreconditionError, NotFoundError, errorMessage, isAlreadyExists } from "../errdefs/errors.js";
import type { PbMount } from "../grpc/messages.js";
import type { Descriptor } from "../registry/manifest.js";
import { formatReference, type ImageReference } from "../registry/reference.js";
import type { RegistryClient, ResolvedImage } from "../registry/registry-client.js";
import { logger } from "../util/logging.js";
import { chainIds } from "./chain-id.js";
import { uniquePart, type ContainerdClient, type PbDescriptor } from "../containerd/containerd-client.js";
import { childGcLabels, distributionSourceLabel, prepareLabels } from "./pull-labels.js";
import type { PullProgress, PullSummary } from "./progress.js";

const log = logger("pull");
/** containerd's default for concurrent layer downloads (ctr --max-concurrent-downloads 3). */
const FETCH_CONCURRENCY = 3;
/** Attempts at a Prepare whose ALREADY_EXISTS is not backed by the chain ID (containerd tries 3 times). */
const PREPARE_TRIES = 3;

export interface PullOptions {
  /** e.g. `linux/amd64`. */
  platform: string;
  snapshotter: string;
  registry: RegistryClient;
  containerd: ContainerdClient;
  progress: PullProgress;
}

export interface PullResult extends PullSummary {
  /** Chain ID of the top layer: the image's root filesystem snapshot. */
  chainId: string;
}

/** The ingest reference containerd's client uses for a blob (remotes.MakeRefKey). */
function ingestRef(kind: "index" | "manifest" | "config" | "layer", digest: string): string {
  return `${kind}-${digest}`;
}

const toPb = (d: Descriptor): PbDescriptor => ({ media_type: d.mediaType, digest: d.digest, size: d.size, annotations: d.annotations ?? {} });

/** The image's diff IDs from its config; as many as it has layers. */
function diffIdsOf(config: Buffer, layers: number, what: string): string[] {
  let diffIds: unknown;
  try {
    diffIds = (JSON.parse(config.toString("utf8")) as { rootfs?: { diff_ids?: unknown } }).rootfs?.diff_ids;
  } catch (err) {
    throw new FailedPreconditionError(`${what}: config is not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (!Array.isArray(diffIds) || !diffIds.every((d): d is string => typeof d === "string" && /^sha256:[0-9a-f]{64}$/.test(d))) {
    throw new FailedPreconditionError(`${what}: config has no valid rootfs.diff_ids`);
  }
  if (diffIds.length !== layers) throw new FailedPreconditionError(`${what}: number of layers and diff IDs don't match: ${layers} != ${diffIds.length}`);
  return diffIds;
}

export class Puller {
  readonly #o: PullOptions;
  readonly #reference: ImageReference;
  readonly #name: string;
  readonly #abort = new AbortController();
  readonly #fetches = new Map<number, Promise<void>>();
  readonly #limit = pLimit(FETCH_CONCURRENCY);

  constructor(options: PullOptions, reference: ImageReference) {
    this.#o = options;
    this.#reference = reference;
    this.#name = formatReference(reference);
  }

  /** Pulls and unpacks; the lease is removed whatever happens. */
  async pull(): Promise<PullResult> {
    const started = Date.now();
    const { containerd } = this.#o;
    await containerd.connect();
    await containerd.createLease();
    try {
      return await this.#pullUnderLease(started);
    } finally {
      this.#abort.abort();
      await Promise.allSettled(this.#fetches.values());
      await containerd.deleteLease().catch((err: unknown) => log.warn("could not delete the pull's lease; it expires in 24 h", { error: errorMessage(err) }));
    }
  }

  async #pullUnderLease(started: number): Promise<PullResult> {
    const { registry, progress } = this.#o;
    const image = await registry.resolve(this.#reference, this.#o.platform);
    const config = await registry.fetchBlob(this.#reference, image.config.digest);
    const diffIds = diffIdsOf(config, image.layers.length, `image ${this.#name}`);
    progress.start(this.#name, image.layers);
    await this.#storeMetadata(image, config);
    const chain = chainIds(diffIds);
    for (let i = 0; i < image.layers.length; i++) await this.#unpackLayer(image.layers, diffIds, chain, i);
    const top = chain[chain.length - 1] ?? "";
    if (top) await this.#o.containerd.updateContentLabels(image.config.digest, { [`containerd.io/gc.ref.snapshot.${this.#o.snapshotter}`]: top });
    await this.#o.containerd.putImage({ name: this.#name, labels: {}, target: rootDescriptor(image) });
    const summary: PullResult = { image: this.#name, layers: image.layers.length, ...progress.counts(), seconds: (Date.now() - started) / 1000, chainId: top };
    progress.finish(summary);
    return summary;
  }

  /** Index (if the reference names one), manifest and config into the content store, each with its GC labels. */
  async #storeMetadata(image: ResolvedImage, config: Buffer): Promise<void> {
    if (image.index) {
      const { bytes, mediaType, manifests } = image.index;
      await this.#storeBlob("index", { mediaType, digest: image.rootDigest, size: bytes.length }, bytes, childGcLabels(manifests));
    }
    const manifest = { mediaType: image.manifest.mediaType, digest: image.digest, size: image.manifestBytes.length };
    await this.#storeBlob("manifest", manifest, image.manifestBytes, childGcLabels([image.config, ...image.layers]));
    await this.#storeBlob("config", image.config, config, {});
  }

  /** Writes a blob unless the store has it; either way it ends up with `labels` and its distribution source. */
  async #storeBlob(kind: "index" | "manifest" | "config" | "layer", desc: Pick<Descriptor, "digest" | "size" | "mediaType">, data: Buffer | (() => Promise<AsyncIterable<Buffer>>), labels: Record<string, string>, onProgress?: (n: number) => void): Promise<void> {
    const { containerd } = this.#o;
    const existing = await containerd.contentInfo(desc.digest);
    const all = { ...labels, ...distributionSourceLabel(this.#reference, existing?.labels) };
    if (existing) return containerd.updateContentLabels(desc.digest, all);
    const bytes = Buffer.isBuffer(data) ? data : await data();
    const written = await containerd.writeContent({ ref: ingestRef(kind, desc.digest), digest: desc.digest, size: desc.size, data: bytes, labels: all, onProgress, signal: this.#abort.signal });
    if (!written) await containerd.updateContentLabels(desc.digest, all);
  }

  /** containerd's unpacker doUnpackFn for layer `i`. */
  async #unpackLayer(layers: readonly Descriptor[], diffIds: readonly string[], chain: readonly string[], i: number): Promise<void> {
    const { containerd, snapshotter, progress } = this.#o;
    const layer = layers[i] as Descriptor;
    const chainId = chain[i] as string;
    const parent = i > 0 ? (chain[i - 1] as string) : "";
    const what = `layer ${i + 1}/${layers.length} ${layer.digest}`;
    try {
      if (await containerd.stat(snapshotter, chainId)) return progress.set(i, "present");
      progress.set(i, "preparing");
      const labels = prepareLabels(this.#name, layers, i, chainId);
      const prepared = await this.#prepare(chainId, parent, labels);
      if (prepared === "lazy") return progress.set(i, "lazy");
      const { key, mounts } = prepared;
      try {
        await this.#applyLayer(layers, i, diffIds[i] as string, mounts);
        await containerd.commit(snapshotter, chainId, key, labels);
      } catch (err) {
        await containerd.remove(snapshotter, key).catch((e: unknown) => log.warn("could not remove extraction snapshot", { key, error: errorMessage(e) }));
        if (isAlreadyExists(err)) return progress.set(i, "present");
        throw err;
      }
      progress.set(i, "unpacked");
    } catch (err) {
      progress.set(i, "failed");
      throw withContext(err, what);
    }
  }

  /** Prepare with the remote labels: "lazy" if the snapshotter took the layer over, else the extraction key and its mounts. */
  async #prepare(chainId: string, parent: string, labels: Record<string, string>): Promise<"lazy" | { key: string; mounts: PbMount[] }> {
    const { containerd, snapshotter } = this.#o;
    for (let attempt = 1; ; attempt++) {
      const key = `extract-${uniquePart()} ${chainId}`;
      try {
        return { key, mounts: await containerd.prepare(snapshotter, key, parent, labels) };
      } catch (err) {
        if (!isAlreadyExists(err)) throw err;
        if (await containerd.stat(snapshotter, chainId)) return "lazy";
        if (attempt >= PREPARE_TRIES) throw new NotFoundError(`snapshotter ${snapshotter} answered ALREADY_EXISTS but snapshot ${chainId} does not exist`, { cause: err });
        log.debug("extraction snapshot already exists, chain ID not found; trying again", { key, chainId });
      }
    }
  }

  /** The fallback: layer blob into the content store, then the diff service applies it onto `mounts`. */
  async #applyLayer(layers: readonly Descriptor[], i: number, diffId: string, mounts: PbMount[]): Promise<void> {
    const { containerd, progress } = this.#o;
    // Like containerd's unpacker: from the first layer that needs its blob, fetch it and every later one.
    for (let j = i; j < layers.length; j++) if (!this.#fetches.has(j)) this.#fetches.set(j, this.#fetchLayer(layers, j));
    await this.#fetches.get(i);
    progress.set(i, "applying");
    const layer = layers[i] as Descriptor;
    const applied = await containerd.apply(toPb(layer), mounts);
    if (applied !== diffId) throw new FailedPreconditionError(`wrong diff ID calculated on extraction: ${applied}, the config says ${diffId}`);
    await containerd.updateContentLabels(layer.digest, { "containerd.io/uncompressed": diffId });
  }

  #fetchLayer(layers: readonly Descriptor[], j: number): Promise<void> {
    const layer = layers[j] as Descriptor;
    const { registry, progress } = this.#o;
    const fetch = this.#limit(async () => {
      if (this.#abort.signal.aborted) return;
      progress.set(j, "downloading", 0);
      await this.#storeBlob("layer", layer, () => registry.blobStream(this.#reference, layer.digest), {}, (n) => progress.set(j, "downloading", n));
      progress.set(j, "downloaded", layer.size);
    });
    fetch.catch(() => undefined); // awaited when its layer is applied
    return fetch;
  }
}

/** `err` with `what` in front of its message, of the same errdefs kind. */
function withContext(err: unknown, what: string): Error {
  const message = `${what}: ${errorMessage(err)}`;
  if (err instanceof AugurError) return new (err.constructor as new (m: string, o: { cause: unknown }) => AugurError)(message, { cause: err });
  return new Error(message, { cause: err });
}

/** The descriptor the image record points at: the index when the reference names one, else the manifest. */
function rootDescriptor(image: ResolvedImage): PbDescriptor {
  if (image.index) return { media_type: image.index.mediaType, digest: image.rootDigest, size: image.index.bytes.length, annotations: {} };
  return { media_type: image.manifest.mediaType, digest: image.digest, size: image.manifestBytes.length, annotations: {} };
}
