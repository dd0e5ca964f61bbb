// Prometheus metrics (prom-client), one registry per daemon so instances in
// one process (tests) do not share counters. Names follow Prometheus'
// conventions: the augur_ prefix, the unit in the name (_seconds, _bytes),
// counters ending in _total; README's metrics table lists each with its labels
// (test/unit/api/metrics.test.ts holds the two together). The process's own
// figures (CPU, resident memory, open fds, event-loop lag) are prom-client's
// standard process_* and nodejs_* metrics, unprefixed as every Node exporter's.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { FetchStats } from "../fetch/fetch-stats.js";
import { status } from "@grpc/grpc-js";
import type { Snapshotter } from "../snapshots/snapshotter.js";
import type { CacheStatus } from "../cache/layer-cache.js";
import type { PeerStats } from "../peer/peers.js";
import type { BlobServerStats } from "../peer/blob-server.js";

/** Figures of the peer client (--peer) and of the cache served to peers (--serve-cache). */
export interface PeerFigures {
  peers?: PeerStats | undefined;
  served?: BlobServerStats | undefined;
}

export class Metrics {
  readonly registry = new Registry();
  readonly grpcRequests: Counter<"method" | "code">;
  readonly fuseOperations: Histogram<"op">;

  constructor(snapshotter: Snapshotter, fetchStats?: FetchStats, cache?: { status(): CacheStatus }, peerFigures: PeerFigures = {}) {
    this.grpcRequests = new Counter({
      name: "augur_grpc_requests_total",
      help: "Snapshots API calls answered, by method and gRPC status code",
      labelNames: ["method", "code"],
      registers: [this.registry],
    });
    new Gauge({
      name: "augur_snapshots",
      help: "Snapshots stored, by kind, over all namespaces",
      labelNames: ["kind"],
      registers: [this.registry],
      async collect() {
        const counts = { active: 0, view: 0, committed: 0 };
        for (const info of await snapshotter.walk({ namespace: undefined }, [])) counts[info.kind]++;
        for (const [kind, n] of Object.entries(counts)) this.set({ kind }, n);
      },
    });
    this.fuseOperations = new Histogram({
      name: "augur_fuse_operation_duration_seconds",
      help: "Time augur took to answer FUSE operations on lazily served layers, by operation",
      labelNames: ["op"],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [this.registry],
    });
    if (fetchStats) this.#fetchMetrics(fetchStats);
    if (cache) this.#cacheMetrics(cache);
    this.#peerMetrics(peerFigures);
    collectDefaultMetrics({ register: this.registry });
  }

  /** Fetch figures as counters, read from the shared FetchStats when scraped. */
  #fetchMetrics(st: FetchStats): void {
    const counter = this.#figureCounter;
    counter("augur_read_bytes_total", "Compressed bytes of layer units that reads asked for: fetched ahead (hit), fetched by an earlier read (again), or fetched for the read (miss)", ["result"],
      () => [[{ result: "hit" }, st.readHitBytes], [{ result: "again" }, st.readAgainBytes], [{ result: "miss" }, st.readMissBytes]]);
    counter("augur_read_miss_fetches_total", "Fetches reads had to wait for", [], () => [[{}, st.missFetches]]);
    counter("augur_prefetch_fetched_bytes_total", "Compressed bytes fetched ahead of reads, by why (soon, later: predicted; speculative: read-ahead)", ["reason"],
      () => Object.entries(st.aheadBytes).map(([reason, v]) => [{ reason }, v]));
    counter("augur_prefetch_used_bytes_total", "Of the bytes fetched ahead, those a read has used, by why they were fetched", ["reason"],
      () => Object.entries(st.aheadUsedBy).map(([reason, v]) => [{ reason }, v]));
  }

  /** The cache directory as all augurs on it share it (gauges), and this instance's reads of it (counters). */
  #cacheMetrics(source: { status(): CacheStatus }): void {
    const registers = [this.registry];
    // one status (a few ledger queries) serves all of a scrape's cache metrics
    let last: { at: number; status: CacheStatus } | undefined;
    const cache = {
      status: (): CacheStatus => {
        if (!last || Date.now() - last.at > 1000) last = { at: Date.now(), status: source.status() };
        return last.status;
      },
    };
    new Gauge({
      name: "augur_cache_bytes", help: "Bytes the cache directory holds, over every augur using it, by kind", labelNames: ["kind"], registers,
      collect() {
        const s = cache.status();
        for (const [kind, n] of Object.entries(s.bytes)) this.set({ kind }, n);
      },
    });
    new Gauge({ name: "augur_cache_limit_bytes", help: "The cache directory's byte bound (--cache-size)", registers, collect() { this.set(cache.status().maxBytes); } });
    new Gauge({ name: "augur_cache_instances", help: "Live augurs using the cache directory, this one included", registers, collect() { this.set(cache.status().instances); } });
    new Gauge({ name: "augur_cache_pinned_layers", help: "Layers augurs on the cache directory are still opening (pinned against eviction)", registers, collect() { this.set(cache.status().directoryPinnedLayers.length); } });
    new Counter({
      name: "augur_cache_reads_total", help: "This augur's reads from the cache, by whether the cache held the bytes", labelNames: ["result"], registers,
      collect() {
        const s = cache.status();
        this.reset();
        this.inc({ result: "hit" }, s.hits);
        this.inc({ result: "miss" }, s.misses);
      },
    });
    new Counter({
      name: "augur_cache_evictions_total", help: "Files this augur evicted to keep the directory within its bound", registers,
      collect() {
        this.reset();
        this.inc(cache.status().evictions);
      },
    });
  }

  #peerMetrics({ peers, served }: PeerFigures): void {
    const total = this.#figureCounter;
    if (peers) {
      total("augur_peer_requests_total", "Misses asked of peers (--peer), by result", ["result"], () => [[{ result: "hit" }, peers.hits], [{ result: "miss" }, peers.misses]]);
      total("augur_peer_fetched_bytes_total", "Layer bytes peers sent this augur", [], () => [[{}, peers.bytes]]);
      total("augur_peer_distrusted_total", "Times a peer was set aside for bad bytes, errors or timeouts", [], () => [[{}, peers.distrusted]]);
    }
    if (served) {
      total("augur_served_requests_total", "Requests the cache served to peers (--serve-cache) answered, by result", ["result"], () => [
        [{ result: "served" }, served.requests - served.notFound - served.busy], [{ result: "not_found" }, served.notFound], [{ result: "busy" }, served.busy],
      ]);
      total("augur_served_bytes_total", "Layer bytes this augur's cache served to peers", [], () => [[{}, served.servedBytes]]);
    }
  }

  /** A counter whose totals live elsewhere (FetchStats, peer figures): set to them at each scrape. */
  readonly #figureCounter = (name: string, help: string, labelNames: string[], read: () => [Record<string, string>, number][]): void => {
    new Counter({
      name, help, labelNames, registers: [this.registry],
      collect() {
        this.reset();
        for (const [labels, v] of read()) this.inc(labels, v);
      },
    });
  };

  observeCall(method: string, code: number): void {
    this.grpcRequests.inc({ method, code: status[code] ?? String(code) });
  }

  observeFuse(op: string, seconds: number): void {
    this.fuseOperations.observe({ op }, seconds);
  }
}
