// The trace directory's byte bound, counted the way `du` would: every byte a
// trace file holds (its header, accesses, end record, the newline that ends a
// torn line) counts against --trace-size.
import { afterEach, describe, expect, it } from "vitest";
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TraceStore } from "../../../snapshotter/trace/trace-store.js";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const newDir = (): string => {
  const d = mkdtempSync(join(tmpdir(), "augur-traces-"));
  dirs.push(d);
  return d;
};
const onDisk = (dir: string): number => readdirSync(dir).reduce((n, f) => n + statSync(join(dir, f)).size, 0);
const LAYER = `sha256:${"1".repeat(64)}`;

function run(store: TraceStore, container: string, accesses: number): string {
  const w = store.create({ namespace: "default", container, snapshot: 1, started: Date.now(), layers: [LAYER] });
  for (let i = 0; i < accesses; i++) w.append({ kind: "access", t: i, op: "open", layer: LAYER, path: `f/${container}/${i}` });
  w.end("stopped");
  return w.id;
}

describe("TraceStore", () => {
  it("puts a new trace on disk at once, header first, so a push right after a short container finds it", () => {
    const dir = newDir();
    const store = new TraceStore({ dir, maxBytes: 1 << 20 });
    const w = store.create({ namespace: "default", container: "quick", snapshot: 1, started: Date.now(), layers: [LAYER] });
    const files = readdirSync(dir);
    expect(files).toEqual([`${w.id}.jsonl`]);
    expect(readFileSync(join(dir, files[0] as string), "utf8")).toMatch(/^\{"kind":"header".*"container":"quick"/);
    w.end("stopped");
  });

  it("counts end records, so finished traces never leave the directory over its bound", () => {
    const dir = newDir();
    const store = new TraceStore({ dir, maxBytes: 4096 });
    for (let i = 0; i < 12; i++) {
      run(store, `c${i}`, 5);
      expect(store.bytes).toBe(onDisk(dir));
      expect(onDisk(dir)).toBeLessThanOrEqual(4096);
    }
    const left = store.list().map((f) => f.header.container);
    expect(left).toContain("c11");
    expect(left).not.toContain("c0");
  });

  it("counts the newline that ends a torn line when a trace is continued after a crash", () => {
    const dir = newDir();
    const first = new TraceStore({ dir, maxBytes: 1 << 20 });
    const w = first.create({ namespace: "default", container: "torn", snapshot: 7, started: Date.now(), layers: [LAYER] });
    w.flushNow();
    appendFileSync(join(dir, `${w.id}.jsonl`), '{"kind":"access","t":1,"op":"op'); // SIGKILL mid-line
    const again = new TraceStore({ dir, maxBytes: 1 << 20 });
    const cont = again.reopen("default", "torn", 7);
    cont?.append({ kind: "access", t: 2, op: "open", layer: LAYER, path: "after" });
    cont?.end("stopped");
    expect(again.bytes).toBe(onDisk(dir));
    expect(again.read(w.id).accesses.map((a) => a.path)).toEqual(["after"]);
  });
});
