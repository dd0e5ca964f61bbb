// augur's metrics keep Prometheus' naming conventions, and README's metrics
// table lists every one with its labels, so an operator's dashboard can be
// written from the README alone.
import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LayerCache } from "../../../snapshotter/cache/layer-cache.js";
import { Metrics } from "../../../snapshotter/api/metrics.js";
import { FetchStats } from "../../../snapshotter/fetch/fetch-stats.js";
import type { Snapshotter } from "../../../snapshotter/snapshots/snapshotter.js";

const noSnapshots = { walk: async () => [] } as unknown as Snapshotter;

const cacheDir = mkdtempSync(join(tmpdir(), "augur-metrics-"));
const cache = new LayerCache(cacheDir, 1 << 20);
afterAll(() => {
  cache.close();
  rmSync(cacheDir, { recursive: true, force: true });
});

function metrics(): Metrics {
  const m = new Metrics(noSnapshots, new FetchStats(), cache, {
    peers: { hits: 0, misses: 0, bytes: 0, distrusted: 0 },
    served: { requests: 0, servedBytes: 0, notFound: 0, busy: 0 },
  });
  m.observeCall("Stat", 5);
  m.observeFuse("read", 0.001);
  return m;
}

function readmeTable(): Map<string, string> {
  const readme = readFileSync(new URL("../../../README.md", import.meta.url), "utf8");
  const section = readme.slice(readme.indexOf("#### Metrics"));
  const rows = new Map<string, string>();
  for (const m of section.matchAll(/^\| `(augur_[a-z0-9_]+)` \| ([a-z]+) \|([^|]*)\|/gm)) rows.set(m[1] as string, `${m[2]}|${(m[3] as string).trim()}`);
  return rows;
}

describe("metrics", () => {
  it("are named by Prometheus' conventions", async () => {
    const all = await metrics().registry.getMetricsAsJSON();
    const augur = all.filter((m) => m.name.startsWith("augur_"));
    expect(augur.length).toBeGreaterThanOrEqual(13);
    for (const m of augur) {
      expect(m.name).toMatch(/^augur_[a-z0-9_]+$/);
      if (String(m.type) === "counter") expect(m.name).toMatch(/_total$/);
      else expect(m.name).not.toMatch(/_total$/);
      if (String(m.type) === "histogram") expect(m.name).toMatch(/_(seconds|bytes)$/);
      expect(m.name).not.toMatch(/_(ms|milliseconds|kb|mb)(_|$)/);
    }
    // the process's own figures come with them
    expect(all.map((m) => m.name)).toEqual(expect.arrayContaining(["process_resident_memory_bytes", "process_cpu_seconds_total"]));
  });

  it("are every one in README's table, with its type and labels", async () => {
    const m = metrics();
    const table = readmeTable();
    const names = (await m.registry.getMetricsAsJSON()).map((x) => x.name).filter((n) => n.startsWith("augur_"));
    expect([...table.keys()].sort()).toEqual([...names].sort());
    for (const name of names) {
      const metric = m.registry.getSingleMetric(name) as unknown as { labelNames: string[] };
      const [type, labels] = (table.get(name) as string).split("|") as [string, string];
      expect(type).toBe((await m.registry.getSingleMetricAsString(name)).match(/# TYPE \S+ (\S+)/)?.[1]);
      // label names are the cell's code spans outside parentheses (which hold their values)
      const documented = [...labels.replace(/\([^)]*\)/g, "").matchAll(/`([a-z_]+)`/g)].map((x) => x[1]);
      expect(documented.sort()).toEqual([...metric.labelNames].sort());
    }
  });

  it("label a call by its gRPC status name", async () => {
    const text = await metrics().registry.metrics();
    expect(text).toContain('augur_grpc_requests_total{method="Stat",code="NOT_FOUND"} 1');
  });
});
