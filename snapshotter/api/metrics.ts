// Prometheus metrics (prom-client), one registry per daemon so instances in
// one process (tests) do not share counters.
import { Counter, Gauge, Registry } from "prom-client";
import { status } from "@grpc/grpc-js";
import type { Snapshotter } from "../snapshots/snapshotter.js";

export class Metrics {
  readonly registry = new Registry();
  readonly grpcRequests: Counter<"method" | "code">;

  constructor(snapshotter: Snapshotter) {
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
  }

  observeCall(method: string, code: number): void {
    this.grpcRequests.inc({ method, code: status[code] ?? String(code) });
  }
}
