// The one place that wires augur's parts together for `augur serve`.
import * as grpc from "@grpc/grpc-js";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { dirname, join } from "node:path";
import type { ServeConfig } from "./config/config.js";
import { OverlaySnapshotter } from "./overlay/overlay-snapshotter.js";
import { snapshotsService } from "./grpc/snapshots-service.js";
import { serviceClient } from "./grpc/proto.js";
import { HttpApi } from "./api/http-api.js";
import { manifestRoutes } from "./api/manifest-routes.js";
import { prefetchRoutes } from "./api/prefetch-routes.js";
import { statusRoutes } from "./api/status-routes.js";
import { Metrics } from "./api/metrics.js";
import { FailedPreconditionError } from "./errdefs/errors.js";
import { LayerCache } from "./cache/layer-cache.js";
import { BlobServer } from "./peer/blob-server.js";
import { Peers } from "./peer/peers.js";
import type { RemoteIndex } from "./remote/layer-opener.js";
import { sha256Digest } from "./util/digest.js";
import { RegistryClient } from "./registry/registry-client.js";
import { RemoteLayers } from "./remote/remote-layers.js";
import { StreamOrder } from "./remote/stream-order.js";
import { IndexLoads } from "./remote/index-loads.js";
import { IndexRefiner } from "./remote/index-refiner.js";
import { mountLayer } from "./fuse/mount-layer.js";
import { FetchStats } from "./fetch/fetch-stats.js";
import { FetchScheduler } from "./prefetch/scheduler.js";
import { Prefetcher } from "./prefetch/prefetcher.js";
import { Learner } from "./predict/learner.js";
import { ProfileSource } from "./manifest/profile-source.js";
import "./predict/predictors.js";
import { procRootUpper } from "./trace/attribution.js";
import { TraceStore, traceDir } from "./trace/trace-store.js";
import { Tracer } from "./trace/tracer.js";
import { WorkloadSource, containerIdOf } from "./trace/workload-source.js";
import { logger } from "./util/logging.js";

const log = logger("daemon");

export class Daemon {
  private constructor(
    readonly config: ServeConfig,
    private readonly snapshotter: OverlaySnapshotter,
    private readonly server: grpc.Server,
    private readonly api: HttpApi,
    readonly cache: LayerCache | undefined,
    private readonly tracer: Tracer | undefined,
    private readonly traces: TraceStore | undefined,
    private readonly workloads: WorkloadSource,
    private readonly stopWatching: () => void,
    private readonly profiles: ProfileSource,
    private readonly refiner: IndexRefiner | undefined,
    private readonly peers: Peers | undefined,
    private readonly blobServer: BlobServer | undefined,
  ) {}

  static async start(config: ServeConfig): Promise<Daemon> {
    mkdirSync(config.root, { recursive: true, mode: 0o700 });
    claimRoot(config.root);
    await claimSocket(config.socket);
    const cache = config.lazy ? new LayerCache(config.cacheDir, config.cacheSize) : undefined;
    const workloads = new WorkloadSource(config.containerdAddress);
    const scheduler = new FetchScheduler();
    const fetchStats = new FetchStats();
    const traces = config.trace && cache ? new TraceStore({ dir: traceDir(config.root), maxBytes: config.traceSize }) : undefined;
    // Parts that answer questions about each other are opened in order; these late ones are asked through `late`.
    const late: { snapshotter?: OverlaySnapshotter; remote?: RemoteLayers; metrics?: Metrics } = {};
    const tracer = traces
      ? new Tracer({
          store: traces,
          rootUpperOf: procRootUpper(),
          workloads,
          containerOf: (upper) => {
            const s = late.snapshotter?.activeByUpper(upper);
            return s && { namespace: s.namespace, container: containerIdOf(s.namespace, s.key), snapshot: s.id, layers: s.lazyLayers };
          },
        })
      : undefined;
    const peers = cache && config.peers.length > 0 ? new Peers(config.peers) : undefined;
    const registry = new RegistryClient({ hostsDir: config.hostsDir, ...(config.dockerConfig ? { dockerConfig: config.dockerConfig } : {}) });
    const profiles = new ProfileSource({
      registry, ...(config.clusterManifest ? { cluster: config.clusterManifest } : {}), trusted: config.trustedArtifacts,
      ...(peers ? { peers } : {}),
      // a node that serves its cache (--serve-cache) passes them on like any cached blob
      ...(cache && config.serveCache ? { keep: (digest: string, bytes: Buffer) => void cache.keepBlob(digest, bytes).catch(() => undefined) } : {}),
    });
    const learner = traces
      ? new Learner({ traces, predictor: config.predictor, stateDir: join(config.root, "models"), extraTraces: () => profiles.traces() })
      : undefined;
    profiles.onChange(() => void learner?.retrain());
    const prefetcher = learner && config.prefetch
      ? new Prefetcher({
          scheduler,
          predictor: () => learner.predictor,
          layerIndex: (digest) => late.remote?.readyIndex(digest),
          settings: { budgetBytes: config.prefetchBudget, granularity: config.prefetchGranularity },
        })
      : undefined;
    tracer?.subscribe(({ container, record }) => {
      if (record.op === "open" || record.op === "read") prefetcher?.accessed(container.snapshot, record);
    });
    const remote = cache
      ? new RemoteLayers({
          registry,
          // the registry's artifacts first, then a peer's cached index (remote/layer-opener.ts takes
          // that layer's bytes from the peer's whole blob, digest-checked, or from the registry)
          remoteIndex: async (spec) => (await profiles.indexFor(spec)) ?? (peers ? peerIndex(peers, spec.layerDigest) : undefined),
          cache,
          ...(peers ? { peers } : {}),
          queue: scheduler,
          stats: fetchStats,
          mount: (dir, view) =>
            mountLayer(dir, view, {
              ...(tracer ? { onAccess: (a) => tracer.observe(view.digest, a) } : {}),
              onOperation: (op, seconds) => late.metrics?.observeFuse(op, seconds),
            }),
          streams: new StreamOrder((layer) => prefetcher?.layerRank(layer)),
          indexLoads: new IndexLoads((layer) => prefetcher?.layerRank(layer)),
          onImage: (image) => {
            // what other nodes learned of it, if the registry has it (asked first: it is a round trip
            // or three away, the node's own prediction is not): learn, and plan the pull again
            void profiles.forImage(image.ref, image.manifest, image.annotations).then(async (found) => {
              if (!found || !learner) return;
              await learner.retrain();
              prefetcher?.imagePulling(image, true);
            });
            prefetcher?.imagePulling(image);
          },
          onLayerReady: (digest) => prefetcher?.layerReady(digest),
        })
      : undefined;
    late.remote = remote;
    // where containers begin reading a gzip layer gets an access point of its own once they end
    const refiner = tracer && remote && config.refineIndexes ? new IndexRefiner((digest, reads, signal) => remote.refineIndex(digest, reads, signal)) : undefined;
    if (refiner) {
      tracer?.subscribe(({ record }) => {
        if (record.op === "read" && record.offset !== undefined && record.length !== undefined) refiner.read(record.layer, record.path, record.offset, record.length);
        else if (record.op === "lookup") refiner.lookup(record.layer, record.path);
      });
    }
    const snapshotter = await OverlaySnapshotter.open(config.root, {
      remote,
      nativeCopy: config.nativeCopy,
      nativeCopyBytes: config.nativeCopySize,
      onActivePrepared: (a) => {
        if (!prefetcher) return;
        const ref = { namespace: a.namespace, container: containerIdOf(a.namespace, a.key), snapshot: a.id, layers: a.lazyLayers };
        void workloads.workloadOf(ref).then((w) => prefetcher.containerStarting(a.id, w));
      },
      onRemove: (r) => {
        tracer?.containerRemoved(r.namespace, containerIdOf(r.namespace, r.key), r.id);
        prefetcher?.containerEnded(r.id);
        void learner?.retrain(); // the run's trace is complete now
        refiner?.containerEnded();
      },
    });
    late.snapshotter = snapshotter;
    // containerd's events say at once when a container is deleted; its snapshot goes only at its next garbage collection
    const stopWatching = tracer
      ? workloads.watchDeletes((ns, id) => {
          for (const snapshot of tracer.containerDeleted(ns, id)) prefetcher?.containerEnded(snapshot);
          void learner?.retrain();
          refiner?.containerEnded();
        })
      : () => undefined;
    traces?.endOrphans((h) => snapshotter.isActive(h.namespace, h.snapshot));
    profiles.start();
    void learner?.retrain();
    const blobServer = cache && config.serveCache ? new BlobServer(cache) : undefined;
    const serving = blobServer && config.serveCache ? await blobServer.listen(config.serveCache) : undefined;
    const metrics = new Metrics(snapshotter, fetchStats, cache, { peers: peers?.stats, served: blobServer?.stats });
    late.metrics = metrics;

    const server = new grpc.Server();
    server.addService(
      serviceClient("containerd.services.snapshots.v1.Snapshots").service,
      snapshotsService(snapshotter, (m, c) => metrics.observeCall(m, c)),
    );
    const api = new HttpApi([
      ...statusRoutes(metrics, () => ({
        lazy: config.lazy, cache: cache?.status() ?? null, layers: remote?.status() ?? [],
        prefetch: {
          enabled: prefetcher !== undefined, predictor: learner?.name ?? null, training: learner?.lastTraining ?? null,
          reads: { hitBytes: fetchStats.readHitBytes, missBytes: fetchStats.readMissBytes, againBytes: fetchStats.readAgainBytes, missFetches: fetchStats.missFetches, recall: fetchStats.recall },
          ahead: { bytes: fetchStats.aheadBytes, usedBytes: fetchStats.aheadUsedBytes, usedBy: fetchStats.aheadUsedBy, precision: fetchStats.precision },
          scheduler: scheduler.stats(), plans: prefetcher?.status() ?? [],
        },
        tracing: tracer?.stats() ?? null,
        indexRefinement: refiner?.status() ?? null,
        // Range requests sent straight to where registries redirected a blob, and redirects followed
        blobLocations: registry.locationCounts,
        // multi-range requests sent and the ranges they carried; ranges fetched one by one instead
        rangeRequests: registry.rangeCounts,
        peers: peers ? { urls: peers.urls, ...peers.stats } : null,
        serving: blobServer && serving ? { address: `${serving.host}:${serving.port}`, ...blobServer.stats } : null,
      })),
      ...prefetchRoutes(remote),
      ...manifestRoutes(),
    ]);
    await api.listen(config.api);
    // the gRPC socket last: once containerd (or a script waiting for augur) can connect, the HTTP API answers too
    await new Promise<void>((resolve, reject) =>
      server.bindAsync(`unix://${config.socket}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
    );
    // the snapshotter API is root's, as containerd's own socket is: not whatever the umask left
    chmodSync(config.socket, 0o600);
    log.info("serving containerd snapshots API", { socket: config.socket, root: config.root });
    return new Daemon(config, snapshotter, server, api, cache, tracer, traces, workloads, stopWatching, profiles, refiner, peers, blobServer);
  }

  /** Stops accepting calls, lets running ones finish (briefly), and releases the socket and root. */
  async stop(): Promise<void> {
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => this.server.forceShutdown(), 5000);
      this.server.tryShutdown(() => {
        clearTimeout(force);
        resolve();
      });
    });
    await this.api.close();
    await this.blobServer?.close();
    await this.refiner?.close();
    await this.snapshotter.close();
    this.stopWatching();
    this.profiles.stop();
    this.tracer?.close();
    this.workloads.close();
    await this.peers?.close();
    // after the mounts are gone: releases this augur's pins in the shared cache ledger
    this.cache?.close();
    rmSync(this.config.socket, { force: true });
    rmSync(pidFile(this.config.root), { force: true });
    log.info("stopped", { socket: this.config.socket });
  }
}

/** A peer's cached index of a layer, as an untrusted remote index (remote/layer-opener.ts checks it). */
async function peerIndex(peers: Peers, layer: string): Promise<RemoteIndex | undefined> {
  const got = await peers.fetchIndex(layer);
  return got && { bytes: got.bytes, digest: sha256Digest(got.bytes), source: `peer ${got.peer}`, fromPeer: true };
}

const pidFile = (root: string): string => join(root, "augur.pid");

/** One augur per root: two writers would each think they own the directories. */
function claimRoot(root: string): void {
  const file = pidFile(root);
  if (existsSync(file)) {
    const pid = Number(readFileSync(file, "utf8").trim());
    if (pid > 0 && pid !== process.pid && isAlive(pid)) {
      throw new FailedPreconditionError(`root ${root} is in use by augur pid ${pid}; stop it or pick another --root`);
    }
  }
  writeFileSync(file, `${process.pid}\n`);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes a stale socket left by a killed augur, but never one somebody is still serving on. */
async function claimSocket(path: string): Promise<void> {
  mkdirSync(dirname(path), { recursive: true });
  if (!existsSync(path)) return;
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(path);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
  if (live) throw new FailedPreconditionError(`socket ${path} is already being served; stop that process or pick another --socket`);
  rmSync(path, { force: true });
}
