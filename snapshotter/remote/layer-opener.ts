// Opens the LayerIndex of a remote layer the cheapest way the cache allows:
//  - eStargz: footer and TOC by Range request; files by chunk.
//  - plain layer with its index cached: spans by Range request.
//  - plain layer whose blob is cached whole: index it from disk.
//  - plain layer met for the first time: stream the blob once into the cache
//    while building its index, then serve it from the cache.
import { createReadStream } from "node:fs";
import type { Readable } from "node:stream";
import type { BlobRange } from "../fetch/blob-source.js";
import { CachedBlob } from "../fetch/cached-blob.js";
import { peerFirst } from "../fetch/peer-first.js";
import type { Peers } from "../peer/peers.js";
import { toReference } from "../registry/reference.js";
import type { FetchQueue } from "../fetch/fetch-queue.js";
import type { FetchStats } from "../fetch/fetch-stats.js";
import type { StreamOrder } from "./stream-order.js";
import { yieldToLoop, type IndexLoads } from "./index-loads.js";
import { CacheWriteError, type LayerCache } from "../cache/layer-cache.js";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { LayerVerificationError } from "../fetch/verification.js";
import { compressionOf, gzipBlockBoundaries } from "../layer/decoders.js";
import { mergedPoints, pointsToAdd, streamOffsets, type ReadStart } from "../layer/access-points.js";
import { EStargzLayerIndex } from "../layer/estargz.js";
import type { LayerIndex } from "../layer/layer-index.js";
import { parseTarIndex, serializeTarIndex } from "../layer/tar-index-codec.js";
import { buildTarIndex, type TarIndex } from "../layer/tar-index.js";
import { TarLayerIndex, type HeaderLookup } from "../layer/tar-layer.js";
import { checkLayout } from "../layer/entry-check.js";
import type { RegistryClient } from "../registry/registry-client.js";
import { logger } from "../util/logging.js";
import type { RemoteLayerSpec } from "./remote-layer.js";

const log = logger("remote");

/** What `refineIndex` did: points added (0 when there was nothing to gain or nothing to do it with, `why` says which). */
export interface Refinement {
  added: number;
  spans: number;
  why?: string;
}

export type LayerFormat = "estargz" | "indexed" | "cached-blob" | "first-contact" | "registry-index";

/** A seekable index of the layer made elsewhere (an artifact in the registry): untrusted until checked. */
export interface RemoteIndex {
  bytes: Buffer;
  /** The digest it was published under; the bytes must match it. */
  digest: string;
  /** Where it came from, for logs. */
  source: string;
  /** Its artifact's digest was pinned (node setting or image annotation): served without entry checks. */
  trusted?: boolean;
  /** A peer's cached index: the layer's bytes then come from the registry only (the peer must not vouch for both). */
  fromPeer?: boolean;
  /** Entries of the layer that workloads look up without reading: their headers are fetched ahead for the entry checks. */
  lookups?: readonly HeaderLookup[];
}

/** How long a layer's open waits for a peer's copy of its blob before reading from the registry meanwhile. */
const PEER_COPY_WAIT_MS = 2_000;
/** Longest a peer may take to send a whole blob: 30 s, plus a second per 10 MiB. */
const PEER_COPY_MS = (size: number): number => 30_000 + Math.ceil(size / (10 << 20)) * 1000;

/**
 * Priority and request size of the header fetches for an untrusted index's
 * entry checks that go with no file (headers that do are fetched with it):
 * ahead of the plan's files, as a container's first lookups wait for them.
 */
const CHECK_AHEAD = { priority: "soon", rank: 0, maxRequestBytes: 1 << 20 } as const;

/** Finds an index of the layer in the registry (manifest/), or undefined. */
export type RemoteIndexSource = (spec: RemoteLayerSpec) => Promise<RemoteIndex | undefined>;

export class LayerOpener {
  constructor(
    private readonly registry: RegistryClient,
    private readonly cache: LayerCache,
    /** Where fetches ahead of reads queue (prefetch/scheduler.ts). */
    private readonly queue: FetchQueue,
    private readonly stats: FetchStats,
    /** First-contact streams take turns in the order the predicted workload reads layers. */
    private readonly streams: StreamOrder,
    /** Loads of cached indexes take turns, the one a Prepare waits for first. */
    private readonly loads: IndexLoads,
    private readonly remoteIndex?: RemoteIndexSource,
    /** Other nodes' caches, asked before the registry (peer/peers.ts). */
    private readonly peers?: Peers,
  ) {}

  blobOf(spec: RemoteLayerSpec): CachedBlob {
    const registry = (offset: number, length: number): Promise<Buffer> => this.registry.fetchBlob(spec.imageRef, spec.layerDigest, { offset, length });
    const ranges = (list: readonly BlobRange[]): Promise<Buffer>[] => this.registry.fetchBlobRanges(spec.imageRef, spec.layerDigest, list);
    const several = (): boolean => this.registry.takesSeveralRanges(spec.imageRef);
    const origin = this.peers
      ? peerFirst(this.peers, toReference(spec.imageRef).repository, spec.layerDigest, registry, ranges, several)
      : { fetch: registry, fetchRanges: ranges, takesSeveralRanges: several };
    return new CachedBlob(this.cache, spec.layerDigest, spec.size, origin);
  }

  /** How the layer will be opened, given what the cache holds now. */
  async formatOf(spec: RemoteLayerSpec): Promise<LayerFormat> {
    if (spec.tocDigest) return "estargz";
    if (await this.cache.hasIndex(spec.layerDigest)) return "indexed";
    if (await this.cache.blobPath(spec.layerDigest)) return "cached-blob";
    return "first-contact";
  }

  /**
   * The layer's index; for eStargz this fetches the footer and TOC. With
   * `remote` (the default) and no index or blob of its own, an index from the
   * registry (checked entry by entry before anything is served) saves
   * streaming the whole layer first. `early`: opened ahead of its Prepare
   * (a cached index then loads after the ones Prepares wait for).
   */
  async open(spec: RemoteLayerSpec, blob: CachedBlob, opts: { remote?: boolean; early?: boolean } = {}): Promise<LayerIndex> {
    if (spec.tocDigest) return EStargzLayerIndex.open(blob, { digest: spec.layerDigest, tocDigest: spec.tocDigest, queue: this.queue, stats: this.stats });
    const stored = await this.cache.readIndex(spec.layerDigest);
    if (stored) {
      const done = await this.loads.turn(spec.layerDigest, !opts.early);
      try {
        const cached = this.#cachedIndex(spec, stored);
        if (cached) {
          await yieldToLoop();
          // spans come over the network: fetch ahead of the reads beside them
          return new TarLayerIndex(cached, blob, { queue: this.queue, stats: this.stats });
        }
      } finally {
        done();
      }
    }
    const path = await this.cache.blobPath(spec.layerDigest);
    if (!path && opts.remote !== false) {
      const remote = await this.#remoteIndex(spec);
      if (remote) {
        if (remote.fromPeer) {
          // the peer that wrote this index must not also vouch for the bytes: they come from the
          // registry, or from the peer's whole blob, checked against the layer digest first
          blob.registryOnly();
          // waited for a moment (a peer on the node network copies fast), then in the background:
          // reads go to the registry until the checked copy lands, then to it
          const copy = this.#copyFromPeer(spec);
          await Promise.race([copy, new Promise((resolve) => setTimeout(resolve, PEER_COPY_WAIT_MS).unref())]);
        }
        const index = new TarLayerIndex(remote.index, blob, { queue: this.queue, stats: this.stats, untrusted: !remote.trusted });
        if (index.untrusted && remote.lookups) index.fetchHeadersAhead(remote.lookups, CHECK_AHEAD);
        return index;
      }
    }
    const index = path ? await indexOfCachedBlob(path, spec) : await this.#firstContact(spec);
    const { bytes } = serializeTarIndex(index);
    await this.cache.storeIndex(spec.layerDigest, bytes);
    return new TarLayerIndex(index, blob);
  }

  /** An index from the registry that fits the layer, or undefined (logged once, the pull goes on without it). */
  async #remoteIndex(spec: RemoteLayerSpec): Promise<{ index: TarIndex; trusted: boolean; fromPeer: boolean; lookups?: readonly HeaderLookup[] } | undefined> {
    let found: RemoteIndex | undefined;
    try {
      found = await this.remoteIndex?.(spec);
    } catch (err) {
      log.warn("could not look for the layer's index in the registry; streaming the layer", { layer: spec.layerDigest, error: errorMessage(err) });
      return undefined;
    }
    if (!found) return undefined;
    try {
      const index = parseTarIndex(found.bytes, found.digest);
      const why = index.digest !== spec.layerDigest ? `it describes layer ${index.digest}`
        : index.blobSize !== spec.size ? `it says the blob is ${index.blobSize} bytes, the manifest ${spec.size}`
        : compressionOf(index.mediaType) !== compressionOf(spec.mediaType) ? `it is for a ${index.mediaType} layer`
        : index.entries.some((e) => e.header === undefined) ? "its entries carry no header offsets to check them by"
        : undefined;
      if (why) throw new InvalidArgumentError(why);
      if (!found.trusted) checkLayout(index.entries, index.uncompressedSize, spec.layerDigest);
      log.info(found.trusted ? "layer index from the registry, pinned as trusted" : "layer index from the registry; entries are checked against the tar as they are served", { layer: spec.layerDigest, source: found.source });
      if (found.trusted) await this.cache.storeIndex(spec.layerDigest, found.bytes);
      return { index, trusted: found.trusted ?? false, fromPeer: found.fromPeer ?? false, ...(found.lookups ? { lookups: found.lookups } : {}) };
    } catch (err) {
      log.warn("index from the registry does not fit the layer; ignored, streaming the layer", { layer: spec.layerDigest, source: found.source, error: errorMessage(err) });
      return undefined;
    }
  }

  /**
   * Streams the whole blob (into the cache) and builds its index: a layer
   * served from an index made elsewhere is checked against it once complete.
   */
  async rebuild(spec: RemoteLayerSpec): Promise<TarIndex> {
    // the cached blob, kept from eviction while it is read; if it is gone or spoiled, streamed again
    const unpin = this.cache.pin(spec.layerDigest);
    let index: TarIndex;
    try {
      const path = await this.cache.blobPath(spec.layerDigest);
      index = path ? await indexOfCachedBlob(path, spec).catch(() => this.#firstContact(spec)) : await this.#firstContact(spec);
    } finally {
      unpin();
    }
    await this.cache.storeIndex(spec.layerDigest, serializeTarIndex(index).bytes);
    return index;
  }

  /**
   * Adds access points to a gzip layer's cached index where `reads` began
   * (access-points.ts). Needs the blob cached whole: the index is rebuilt
   * from it, digest-checked like any other, and replaces the old one in one
   * rename, so a stop half-way leaves the old one. Layers already open keep
   * the index they have; the next open uses the new one.
   */
  async refineIndex(digest: string, reads: readonly ReadStart[], signal?: AbortSignal): Promise<Refinement> {
    const path = await this.cache.blobPath(digest);
    const bytes = path && (await this.cache.readIndex(digest));
    if (!path || !bytes) return { added: 0, spans: 0, why: "the blob or its index is not cached" };
    const unpin = this.cache.pin(digest);
    try {
      const index = parseTarIndex(bytes);
      if (index.compression !== "gzip") return { added: 0, spans: index.spans.length, why: `${index.compression} layer` };
      const existing = index.spans.map((s) => s.out);
      const starts = streamOffsets(index, reads);
      // cheap test first: a point near every start already
      if (pointsToAdd(existing, starts, starts).length === 0) return { added: 0, spans: existing.length, why: "points are near every read already" };
      const read = () => createReadStream(path, { highWaterMark: 1 << 20, ...(signal ? { signal } : {}) });
      const added = pointsToAdd(existing, starts, await gzipBlockBoundaries(read()));
      if (added.length === 0) return { added: 0, spans: existing.length, why: "no block boundary nearer the reads" };
      const refined = await buildTarIndex(read(), { digest, mediaType: index.mediaType, spanSize: index.spanSize, accessAt: mergedPoints(existing, added) });
      if (refined.entries.length !== index.entries.length || refined.diffId !== index.diffId) {
        throw new InvalidArgumentError(`layer ${digest}: the rebuilt index differs from the cached one (${refined.entries.length} entries, ${index.entries.length} before)`);
      }
      await this.cache.storeIndex(digest, serializeTarIndex(refined).bytes);
      return { added: refined.spans.length - index.spans.length, spans: refined.spans.length };
    } finally {
      unpin();
    }
  }

  /** A Prepare came for a layer opened early: its index loads next. */
  hurry(digest: string): void {
    this.loads.hurry(digest);
  }

  #cachedIndex(spec: RemoteLayerSpec, bytes: Buffer): TarIndex | undefined {
    try {
      const index = parseTarIndex(bytes);
      if (index.digest === spec.layerDigest) return index;
      log.warn("cached index describes another layer; rebuilding it", { layer: spec.layerDigest, index: index.digest });
    } catch (err) {
      log.warn("cached index is unreadable; rebuilding it", { layer: spec.layerDigest, error: errorMessage(err) });
    }
    return undefined;
  }

  /** Streams the whole blob once: into the cache and through the indexer, which checks the layer digest. */
  async #firstContact(spec: RemoteLayerSpec): Promise<TarIndex> {
    const done = await this.streams.turn(spec.layerDigest);
    try {
      // another augur on this cache directory streaming the same layer is waited for, not repeated
      const claim = await this.cache.claimBlob(spec.layerDigest, spec.size);
      const path = claim ? undefined : await this.cache.blobPath(spec.layerDigest);
      if (path) {
        log.info("layer streamed by another augur on this cache; indexing its copy", { layer: spec.layerDigest });
        return await indexOfCachedBlob(path, spec);
      }
      try {
        return await this.#stream(spec);
      } finally {
        claim?.release();
      }
    } finally {
      done();
    }
  }

  /**
   * The whole blob from a peer that holds it, into the cache, kept only if it
   * matches the layer digest (no indexing: an index is at hand). False when
   * no peer has it, or its copy failed or was too slow (the peer is then set
   * aside; not for a failure of this node's own disk).
   */
  async #copyFromPeer(spec: RemoteLayerSpec): Promise<boolean> {
    const claim = await this.cache.claimBlob(spec.layerDigest, spec.size);
    try {
      if (await this.cache.blobPath(spec.layerDigest)) return true; // a neighbour on this cache copied it
      const peer = await this.peers?.blobStream(toReference(spec.imageRef).repository, spec.layerDigest, spec.size);
      if (!peer) return false;
      const started = Date.now();
      // a peer is a shortcut: one that trickles is cut off, and reads stay with the registry
      const deadline = setTimeout(() => peer.body.destroy(new Error(`copy not done in ${PEER_COPY_MS(spec.size) / 1000} s`)), PEER_COPY_MS(spec.size));
      try {
        const got = await this.cache.storeBlob(spec.layerDigest, peer.body as AsyncIterable<Buffer>, spec.size);
        log.info("layer copied whole from a peer and verified", { layer: spec.layerDigest, bytes: got, ms: Date.now() - started, from: `peer ${peer.peer}` });
        return true;
      } catch (err) {
        peer.body.destroy();
        if (err instanceof CacheWriteError) log.warn("could not keep a peer's copy of the layer; reading it from the registry", { layer: spec.layerDigest, error: errorMessage(err) });
        else this.peers?.distrust(peer.peer, `its copy of ${spec.layerDigest} failed: ${errorMessage(err)}`);
        return false;
      } finally {
        clearTimeout(deadline);
      }
    } catch (err) {
      log.warn("could not copy the layer from a peer; reading it from the registry", { layer: spec.layerDigest, error: errorMessage(err) });
      return false;
    } finally {
      claim?.release();
    }
  }

  /** The whole blob from a peer that has it, else (or if the peer's copy fails) from the registry. */
  async #stream(spec: RemoteLayerSpec): Promise<TarIndex> {
    const peer = await this.peers?.blobStream(toReference(spec.imageRef).repository, spec.layerDigest, spec.size);
    if (peer) {
      try {
        return await this.#streamFrom(spec, peer.body, `peer ${peer.peer}`);
      } catch (err) {
        // whatever went wrong, the registry's copy is tried once: its failure is the one reported
        this.peers?.distrust(peer.peer, `its copy of ${spec.layerDigest} failed: ${errorMessage(err)}`);
      }
    }
    return this.#streamFrom(spec, await this.registry.blobStream(spec.imageRef, spec.layerDigest, 0), "registry");
  }

  async #streamFrom(spec: RemoteLayerSpec, stream: Readable, from: string): Promise<TarIndex> {
    const started = Date.now();
    let writer: ReturnType<LayerCache["blobWriter"]>;
    try {
      writer = this.cache.blobWriter(spec.layerDigest);
    } catch (err) {
      stream.destroy();
      throw err;
    }
    // the manifest's size is a claim like the digest (containerd's fetcher refuses a mismatch too):
    // a blob longer than it stops there, so it cannot fill the disk
    let got = 0;
    async function* tee(): AsyncGenerator<Buffer> {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        got += chunk.length;
        if (got > spec.size) throw new LayerVerificationError(spec.layerDigest, `blob is longer than the ${spec.size} bytes the manifest says`);
        await writer.write(chunk);
        yield chunk;
      }
      if (got !== spec.size) throw new LayerVerificationError(spec.layerDigest, `blob is ${got} bytes, the manifest says ${spec.size}`);
    }
    try {
      const index = await buildTarIndex(tee(), { digest: spec.layerDigest, mediaType: spec.mediaType });
      await writer.commit();
      log.info("layer streamed, verified and indexed", {
        layer: spec.layerDigest, bytes: index.blobSize, entries: index.entries.length, ms: Date.now() - started, from,
      });
      return index;
    } catch (err) {
      writer.abort();
      stream.destroy();
      throw err;
    }
  }
}

/** Indexes a whole blob the cache holds (checked against the layer digest as it is read). */
function indexOfCachedBlob(path: string, spec: RemoteLayerSpec): Promise<TarIndex> {
  return buildTarIndex(createReadStream(path, { highWaterMark: 1 << 20 }), { digest: spec.layerDigest, mediaType: spec.mediaType });
}
