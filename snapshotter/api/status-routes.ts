// GET /healthz, /metrics and /cache/status.
import type { Route } from "./http-api.js";
import type { Metrics } from "./metrics.js";

/** What /cache/status shows: each part reports itself (daemon.ts wires them). */
export type StatusSource = () => object;

export function statusRoutes(metrics: Metrics, status: StatusSource): Route[] {
  return [
    { method: "GET", path: /^\/healthz$/, handler: async () => ({ type: "text/plain", body: "ok\n" }) },
    {
      method: "GET",
      path: /^\/metrics$/,
      handler: async () => ({ type: metrics.registry.contentType, body: await metrics.registry.metrics() }),
    },
    { method: "GET", path: /^\/cache\/status$/, handler: async () => ({ body: status() }) },
  ];
}
