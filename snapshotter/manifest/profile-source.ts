// Where a node gets what other nodes learned: an image's profile artifact,
// looked for at the image's first Prepare, and the cluster manifest the node
// is configured with (`--cluster-manifest REF`), read at start and every few
// minutes. Their workload profiles feed the predictors (as traces); their
// seekable indexes give random access to plain layers this node never saw.
// A registry without an artifact costs one request; a broken artifact is
// ignored with one log line. Trust: an index is checked entry by entry
// (remote/) unless the artifact's digest is pinned, by the node
// (`--trust-artifact`) or by the image (annotation io.augur.profile.digest).
import { errorMessage } from "../errdefs/errors.js";
import { TAR_INDEX_MEDIA_TYPES } from "../layer/tar-index-codec.js";
import type { Descriptor } from "../registry/manifest.js";
import { parseReference, type ImageReference } from "../registry/reference.js";
import type { RegistryClient } from "../registry/registry-client.js";
import type { HeaderLookup } from "../layer/tar-layer.js";
import type { RemoteIndex } from "../remote/layer-opener.js";
import type { RemoteLayerSpec } from "../remote/remote-layer.js";
import type { Trace } from "../trace/trace-format.js";
import { logger } from "../util/logging.js";
import { CLUSTER_MANIFEST_MEDIA_TYPE, LIMITS, PROFILE_ARTIFACT_TYPE, parseClusterManifest, profileTraces, type ClusterManifest } from "./cluster-manifest.js";
import { findArtifact, pullArtifact, repositoryOf } from "./manifest-artifact.js";

const log = logger("manifest");

/** The image annotation that pins the digest of the profile artifact to trust. */
export const PINNED_PROFILE_ANNOTATION = "io.augur.profile.digest";
/** An index blob bigger than this is not fetched. */
const MAX_INDEX_BYTES = 256 << 20;
const CLUSTER_REFRESH_MS = 5 * 60_000;
/** "No artifact for this image" is remembered this long. */
const NONE_TTL_MS = 60_000;
/** Indexes fetched with an image's artifact wait this long for their layer to open. */
const EARLY_INDEX_KEPT_MS = 120_000;
/** An image's artifact has its indexes fetched with it when they are at most this many and this big together. */
const EARLY_INDEXES = 32;
const EARLY_INDEX_BYTES = 64 << 20;

export interface LoadedProfile {
  /** ref@digest of the artifact. */
  source: string;
  digest: string;
  manifest: ClusterManifest;
  repo: ImageReference;
  /** The artifact's blobs by digest (the indexes it carries). */
  blobs: Map<string, Descriptor>;
  /** Fetches one of them, verified, at most `maxBytes`. */
  blob: (d: Descriptor, maxBytes: number) => Promise<Buffer>;
  trusted: boolean;
}

/** Other nodes' caches (peer/peers.ts), asked for an artifact's blobs before the registry. */
export interface ArtifactBlobPeers {
  /** The blob whole, checked against `digest`; undefined when no peer has it. */
  blob(repository: string, digest: string, size: number): Promise<Buffer | undefined>;
}

export interface ProfileSourceOptions {
  registry: RegistryClient;
  /**
   * Peers: an artifact's blobs (its profile, its indexes: 1.7 MB for the
   * python image) come from the first that has them. They are content by
   * digest, checked like the registry's, so only the artifact's manifest,
   * which says what to trust, has to come from the registry.
   */
  peers?: ArtifactBlobPeers;
  /** Keeps an artifact's blob this node fetched, so its own --serve-cache can pass it on. */
  keep?: (digest: string, bytes: Buffer) => void;
  /** The cluster manifest's reference (`--cluster-manifest`). */
  cluster?: string;
  /** Artifact digests whose indexes are trusted without checks. */
  trusted?: readonly string[];
}

export class ProfileSource {
  readonly #opts: ProfileSourceOptions;
  readonly #byImage = new Map<string, { at: number; loaded: Promise<LoadedProfile | undefined> }>();
  readonly #pendingByRef = new Map<string, Promise<LoadedProfile | undefined>>();
  readonly #listeners: (() => void)[] = [];
  #cluster: LoadedProfile | undefined;
  readonly #images: LoadedProfile[] = [];
  #timer: NodeJS.Timeout | undefined;
  #firstClusterLoad: Promise<void> | undefined;
  #warned = new Set<string>();

  constructor(opts: ProfileSourceOptions) {
    this.#opts = opts;
  }

  /** Hears when a new profile arrived (the predictors should learn again). */
  onChange(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /** Reads the cluster manifest now and every few minutes. */
  start(): void {
    if (!this.#opts.cluster) return;
    this.#firstClusterLoad = this.#loadCluster();
    const load = (): void => void this.#loadCluster();
    this.#timer = setInterval(load, CLUSTER_REFRESH_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  /** Looks for the image's profile artifact (once per manifest for a while); never throws. */
  forImage(imageRef: string, manifestDigest: string, annotations: Record<string, string> = {}): Promise<LoadedProfile | undefined> {
    const hit = this.#byImage.get(manifestDigest);
    if (hit && Date.now() - hit.at < NONE_TTL_MS) return hit.loaded;
    const loaded = this.#lookUp(imageRef, manifestDigest, annotations[PINNED_PROFILE_ANNOTATION]);
    this.#byImage.set(manifestDigest, { at: Date.now(), loaded });
    this.#pendingByRef.set(imageRef, loaded);
    void loaded.then((p) => {
      if (p) {
        this.#byImage.set(manifestDigest, { at: Number.POSITIVE_INFINITY, loaded }); // found: kept
        this.#changed();
      }
    });
    return loaded;
  }

  /** Every loaded profile as traces, for the predictors. */
  traces(): Trace[] {
    const out: Trace[] = [];
    for (const p of this.#loaded()) out.push(...profileTraces(p.manifest, p.source));
    return out;
  }

  /** A seekable index for the layer from a loaded profile, fetched from its artifact; undefined when none has one. */
  async indexFor(spec: RemoteLayerSpec): Promise<RemoteIndex | undefined> {
    await this.#pendingByRef.get(spec.imageRef); // the image's own lookup, started at its first Prepare
    // A pull right after start must not miss the cluster's indexes: they save a whole-layer stream.
    await this.#firstClusterLoad;
    for (const p of this.#loaded()) {
      const ref = p.manifest.layers[spec.layerDigest]?.index;
      if (!ref || !TAR_INDEX_MEDIA_TYPES.includes(ref.mediaType)) continue;
      const desc = p.blobs.get(ref.digest);
      if (!desc) continue;
      try {
        const bytes = await p.blob(desc, MAX_INDEX_BYTES);
        const lookups = this.#lookupsIn(spec.layerDigest);
        return { bytes, digest: ref.digest, source: p.source, trusted: p.trusted, ...(lookups.length ? { lookups } : {}) };
      } catch (err) {
        this.#warnOnce(`${p.source} ${ref.digest}`, "could not fetch a layer index from the registry; streaming the layer", { layer: spec.layerDigest, source: p.source, error: errorMessage(err) });
      }
    }
    return undefined;
  }

  /**
   * What the loaded profiles' workloads look up in the layer without reading
   * it, first-touch order, each once; with its place in the workload's reads
   * where the profile says (its header is fetched at that place in the plan).
   */
  #lookupsIn(layer: string): HeaderLookup[] {
    const out = new Map<string, HeaderLookup>();
    for (const p of this.#loaded()) {
      for (const w of p.manifest.workloads) {
        for (const e of w.lookups ?? []) {
          if (e.layer !== layer || out.has(e.path) || out.size >= LIMITS.filesPerWorkload) continue;
          out.set(e.path, { path: e.path, ...(e.before !== undefined ? { rank: e.before } : {}) });
        }
      }
    }
    return [...out.values()];
  }

  #loaded(): LoadedProfile[] {
    const out: LoadedProfile[] = [];
    if (this.#cluster) out.push(this.#cluster);
    return out.concat(this.#images);
  }

  async #lookUp(imageRef: string, manifestDigest: string, pinned: string | undefined): Promise<LoadedProfile | undefined> {
    let repo: ImageReference;
    try {
      repo = repositoryOf(parseReference(imageRef));
    } catch {
      return undefined;
    }
    try {
      const found = await findArtifact(this.#opts.registry, repo, manifestDigest, PROFILE_ARTIFACT_TYPE);
      if (!found) return undefined;
      const loaded = await this.#load(repo, found.descriptor.digest, pinned, "image");
      if (loaded) {
        this.#images.push(loaded);
        log.info("profile artifact found for the image", { image: imageRef, artifact: loaded.source, workloads: loaded.manifest.workloads.length, via: found.foundBy });
      }
      return loaded;
    } catch (err) {
      this.#warnOnce(`image ${manifestDigest}`, "could not look for the image's profile in the registry; going on without", { image: imageRef, error: errorMessage(err) });
      return undefined;
    }
  }

  async #loadCluster(): Promise<void> {
    const ref = this.#opts.cluster as string;
    try {
      const r = parseReference(ref);
      const loaded = await this.#load(repositoryOf(r), r.digest ?? r.tag ?? "latest", undefined, "cluster");
      if (!loaded || loaded.digest === this.#cluster?.digest) return;
      this.#cluster = loaded;
      log.info("cluster manifest loaded", { ref, artifact: loaded.source, workloads: loaded.manifest.workloads.length });
      this.#changed();
    } catch (err) {
      this.#warnOnce(`cluster ${ref}`, "could not read the cluster manifest; going on with what this node knows", { ref, error: errorMessage(err) });
    }
  }

  /**
   * The artifact's cluster manifest, parsed and checked; undefined (logged)
   * when it is not one. An image's artifact (`kind` "image") has its indexes
   * fetched at once; the cluster's, many images', only as layers open.
   */
  async #load(repo: ImageReference, tagOrDigest: string, pinned: string | undefined, kind: "image" | "cluster"): Promise<LoadedProfile | undefined> {
    const pulled = await pullArtifact(this.#opts.registry, repo, tagOrDigest);
    const a = { ...pulled, blob: (d: Descriptor, maxBytes: number) => this.#artifactBlob(repo, d, maxBytes, pulled.blob) };
    const source = `${repo.host}/${repo.repository}@${a.digest}`;
    try {
      if (a.manifest.artifactType !== PROFILE_ARTIFACT_TYPE) throw new Error(`artifactType ${a.manifest.artifactType} is not ${PROFILE_ARTIFACT_TYPE}`);
      const first = a.manifest.layers[0];
      if (!first || first.mediaType !== CLUSTER_MANIFEST_MEDIA_TYPE) throw new Error("its first blob is not a cluster manifest");
      // an image's artifact carries the indexes of that image's layers, wanted as they open: asked
      // for beside its cluster manifest, not a round trip after it; each taken once, and let go
      // after a while if no layer took it (the layer had an index of its own)
      const early = new Map<string, Promise<Buffer>>();
      const indexes = a.manifest.layers.slice(1).filter((d) => TAR_INDEX_MEDIA_TYPES.includes(d.mediaType));
      // bounded: an artifact made to look like many layers' is fetched as layers open, as before
      if (kind === "image" && indexes.length <= EARLY_INDEXES && indexes.reduce((n, d) => n + d.size, 0) <= EARLY_INDEX_BYTES) {
        for (const d of indexes) {
          const got = a.blob(d, MAX_INDEX_BYTES);
          got.catch(() => undefined); // whoever takes it sees the failure
          early.set(d.digest, got);
        }
        setTimeout(() => early.clear(), EARLY_INDEX_KEPT_MS).unref();
      }
      const blob = (d: Descriptor, maxBytes: number): Promise<Buffer> => {
        const got = early.get(d.digest);
        early.delete(d.digest);
        return got ?? a.blob(d, maxBytes);
      };
      const manifest = parseClusterManifest(await blob(first, LIMITS.bytes), source);
      const trusted = (this.#opts.trusted ?? []).includes(a.digest) || pinned === a.digest;
      return { source, digest: a.digest, manifest, repo, blobs: new Map(a.manifest.layers.map((d) => [d.digest, d])), blob, trusted };
    } catch (err) {
      this.#warnOnce(source, "profile artifact in the registry is not usable; ignored", { artifact: source, error: errorMessage(err) });
      return undefined;
    }
  }

  /** One of an artifact's blobs: from a peer that has it, else from the registry; kept for this node's peers either way. */
  async #artifactBlob(repo: ImageReference, d: Descriptor, maxBytes: number, fromRegistry: (d: Descriptor, maxBytes: number) => Promise<Buffer>): Promise<Buffer> {
    let bytes = d.size <= maxBytes ? await this.#opts.peers?.blob(repo.repository, d.digest, d.size).catch(() => undefined) : undefined;
    bytes ??= await fromRegistry(d, maxBytes);
    this.#opts.keep?.(d.digest, bytes);
    return bytes;
  }

  #changed(): void {
    for (const l of this.#listeners) l();
  }

  #warnOnce(key: string, msg: string, fields: Record<string, string>): void {
    if (this.#warned.has(key)) return;
    this.#warned.add(key);
    log.warn(msg, fields);
  }
}
