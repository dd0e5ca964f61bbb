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

export class Metrics {
  readonly registry = new Registry();
  readonly grpcRequests: Counter<"method" | "code">;
  readonly fuseOperations: Histogram<"op">;

  constructor(snapshotter: Snapshotter, fetchStats?: FetchStats) {
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
    collectDefaultMetrics({ register: this.registry });
  }

  /** Fetch figures as counters, read from the shared FetchStats when scraped. */
  #fetchMetrics(st: FetchStats): void {
    const counter = (name: string, help: string, labelNames: string[], read: () => [Record<string, string>, number][]): void => {
      // counters whose totals live in FetchStats: set to them at each scrape
      new Counter({
        name, help, labelNames, registers: [this.registry],
        collect() {
          this.reset();
          for (const [labels, v] of read()) this.inc(labels, v);
        },
      });
    };
    counter("augur_read_bytes_total", "Compressed bytes of layer units that reads asked for: fetched ahead (hit), fetched by an earlier read (again), or fetched for the read (miss)", ["result"],
      () => [[{ result: "hit" }, st.readHitBytes], [{ result: "again" }, st.readAgainBytes], [{ result: "miss" }, st.readMissBytes]]);
    counter("augur_read_miss_fetches_total", "Fetches reads had to wait for", [], () => [[{}, st.missFetches]]);
    counter("augur_prefetch_fetched_bytes_total", "Compressed bytes fetched ahead of reads, by why (soon, later: predicted; speculative: read-ahead)", ["reason"],
      () => Object.entries(st.aheadBytes).map(([reason, v]) => [{ reason }, v]));
    counter("augur_prefetch_used_bytes_total", "Of the bytes fetched ahead, those a read has used, by why they were fetched", ["reason"],
      () => Object.entries(st.aheadUsedBy).map(([reason, v]) => [{ reason }, v]));
  }

  observeCall(method: string, code: number): void {
    this.grpcRequests.inc({ method, code: status[code] ?? String(code) });
  }

  observeFuse(op: string, seconds: number): void {
    this.fuseOperations.observe({ op }, seconds);
  }
}
