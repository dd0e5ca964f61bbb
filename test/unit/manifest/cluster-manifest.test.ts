import { describe, expect, it } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createRequire } from "node:module";
import type { Ajv2020 as Ajv2020Class } from "ajv/dist/2020.js";
import type { FormatsPlugin } from "ajv-formats";
import { buildClusterManifest, findProfiles, parseClusterManifest, profileTraces, type ClusterManifest } from "../../../snapshotter/manifest/cluster-manifest.js";
import { readTraces } from "../../../snapshotter/predict/predict-command.js";
import { TraceHistory } from "../../../snapshotter/predict/history.js";
import { createPredictor } from "../../../snapshotter/predict/predictor.js";
import "../../../snapshotter/predict/predictors.js";

const repo = join(import.meta.dirname, "..", "..", "..");
const traces = readTraces(join(repo, "docs", "traces"));
const schema = JSON.parse(readFileSync(join(repo, "snapshotter", "manifest", "cluster-manifest.schema.json"), "utf8")) as object;
// ajv is CommonJS: its classes come through require
const require = createRequire(import.meta.url);
const { Ajv2020 } = require("ajv/dist/2020.js") as { Ajv2020: typeof Ajv2020Class };
const addFormats = (require("ajv-formats") as { default: FormatsPlugin }).default;
const ajv = new Ajv2020({ allErrors: true, strict: false });
addFormats(ajv);
const valid = ajv.compile(schema);
const index = { digest: `sha256:${"1".repeat(64)}`, size: 1234, mediaType: "application/vnd.augur.layer.index.v3" };

const built = (): ClusterManifest => buildClusterManifest(traces, { granularity: 16, tool: "augur test", indexOf: () => index });

describe("cluster manifest", () => {
  it("is built from traces: one profile per workload signature, files in read order with ranges and confidence, layer preference, indexes", () => {
    const m = built();
    expect(valid(m), JSON.stringify(valid.errors?.slice(0, 3))).toBe(true);
    expect(m.workloads).toHaveLength(7); // seven workloads, four runs each
    expect(m.runs).toBe(28);
    const python = m.workloads.find((w) => w.image?.endsWith("/bench/python:plain"));
    expect(python?.runs).toBe(4);
    expect(python?.granularity).toBe(16);
    expect(python?.files.length).toBeGreaterThan(100);
    expect(python?.files.map((f) => f.order)).toEqual(python?.files.map((_, i) => i));
    expect(python?.files.every((f) => f.confidence > 0 && f.confidence <= 1 && f.ranges.length > 0)).toBe(true);
    // python reads its base layer first (the loader), then the python layer
    expect(python?.layerPreference[0]).toBe(python?.layers[0]);
    expect(python?.layerPreference).toContain(python?.layers[2]);
    for (const l of python?.layers ?? []) expect(m.layers[l]?.index).toEqual(index);
    expect(findProfiles(m, { signature: python?.signature })).toEqual([python]);
    expect(findProfiles(m, { image: python?.manifest })).toHaveLength(1);
  });

  it("lists what a workload looks up without reading: directories and files it only stats, each once, none it reads", () => {
    const python = built().workloads.find((w) => w.image?.endsWith("/bench/python:plain"));
    const lookups = python?.lookups ?? [];
    const key = (e: { layer: string; path: string }): string => `${e.layer} ${e.path}`;
    const read = new Set(python?.files.map(key));
    expect(lookups.length).toBeGreaterThan(50);
    expect(lookups.filter((e) => read.has(key(e)))).toEqual([]);
    expect(new Set(lookups.map(key)).size).toBe(lookups.length);
    // python stats a module's source before it opens the module's .pyc
    expect(lookups.map((e) => e.path)).toContain("usr/lib/python3.11/json/__init__.py");
    expect(python?.files.map((f) => f.path)).toContain("usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc");
    expect(lookups.map((e) => e.path)).toContain("usr/lib/python3.11");
    // and where each comes among the reads: the stat of json/__init__.py just before json's .pyc is read
    const newest = lookups.filter((e) => e.before !== undefined);
    expect(newest.length).toBeGreaterThan(50);
    expect(newest.map((e) => e.before)).toEqual([...newest.map((e) => e.before as number)].sort((a, b) => a - b));
    const pyc = python?.files.find((f) => f.path === "usr/lib/python3.11/json/__pycache__/__init__.cpython-311.pyc");
    const before = lookups.find((e) => e.path === "usr/lib/python3.11/json/__init__.py")?.before;
    expect(before).toBe(pyc?.order);
  });

  it("parses what it builds, and predictors learn from its profiles as from traces", async () => {
    const m = built();
    const again = parseClusterManifest(JSON.stringify(m));
    expect(again).toEqual(m);
    const replay = createPredictor("replay");
    await replay.train(new TraceHistory(profileTraces(again, "test")));
    const python = again.workloads.find((w) => w.image?.endsWith("/bench/python:plain"));
    const predicted = replay.predict({ workload: { layers: python?.layers ?? [], args: [], cwd: "", env: {} }, accessed: [], limit: 1000 });
    expect(predicted.map((p) => p.path)).toEqual(expect.arrayContaining(python?.files.slice(0, 20).map((f) => f.path) ?? []));
  });

  it("refuses hostile or broken input with an error naming what is wrong", () => {
    const m = built();
    const bad = (change: (doc: Record<string, unknown> & ClusterManifest) => void): string => {
      const doc = JSON.parse(JSON.stringify(m)) as Record<string, unknown> & ClusterManifest;
      change(doc);
      try {
        parseClusterManifest(JSON.stringify(doc));
        return "accepted";
      } catch (err) {
        return (err as Error).message;
      }
    };
    expect(bad((d) => void (d.schemaVersion = 2 as 1))).toMatch(/schemaVersion: 2 is not 1/);
    expect(bad((d) => void ((d.workloads[0] as { files: { path: string }[] }).files[0] = { ...(d.workloads[0]?.files[0] as object), path: "../../etc/shadow" } as never))).toMatch(/is not a clean path inside a layer/);
    expect(bad((d) => void ((d.workloads[0]?.files[0] as { layer: string }).layer = `sha256:${"9".repeat(64)}`))).toMatch(/is not one of the workload's layers/);
    expect(bad((d) => void ((d.workloads[0]?.files[0] as { confidence: number }).confidence = 7))).toMatch(/confidence: not a number from 0 to 1/);
    expect(bad((d) => void ((d.workloads[0] as { signature: string }).signature = "md5:x"))).toMatch(/signature: "md5:x" is not a sha256 digest/);
    expect(bad((d) => void ((d.workloads[0] as { files: unknown[] }).files = Array.from({ length: 50_001 }, () => ({}))))).toMatch(/50001 entries, at most 50000 allowed/);
    expect(bad((d) => void ((d.workloads[0] as { lookups: unknown[] }).lookups = [{ layer: d.workloads[0]?.layers[0], path: "/etc/passwd" }]))).toMatch(/lookups\[0\]\.path: .* is not a clean path inside a layer/);
    expect(bad((d) => void ((d.workloads[0] as { lookups: unknown[] }).lookups = [{ layer: `sha256:${"9".repeat(64)}`, path: "etc" }]))).toMatch(/lookups\[0\]\.layer: .* is not one of the workload's layers/);
    expect(() => parseClusterManifest("{ not json")).toThrow(/not JSON/);
    expect(() => parseClusterManifest(Buffer.alloc((32 << 20) + 1, 0x20))).toThrow(/at most 33554432 allowed/);
  });
});
