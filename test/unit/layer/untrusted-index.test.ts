// An index made elsewhere is checked entry by entry against the layer's tar
// headers, and as a whole against the blob: a hostile one never gets a wrong
// byte or attribute served.
import { describe, expect, it } from "vitest";
import { gzipSync } from "node:zlib";
import { layerTar } from "../../../scripts/images/oci-image.js";
import { IndexMismatchError } from "../../../snapshotter/fetch/verification.js";
import { CHECK_READ_BYTES, checkLayout, firstDifference } from "../../../snapshotter/layer/entry-check.js";
import { buildTarIndex, type TarIndex } from "../../../snapshotter/layer/tar-index.js";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import type { TarRecord } from "../../../snapshotter/layer/tar-scanner.js";
import { DeferredView } from "../../../snapshotter/remote/deferred-view.js";
import type { FetchQueue } from "../../../snapshotter/fetch/fetch-queue.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";
import { chunks, countingSource, noise, sha256 } from "./helpers.js";

const MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip";
const A = Buffer.from("the real contents of a\n");
const B = Buffer.from("SECRET contents of b, longer than a's\n");

async function layer(): Promise<{ blob: Buffer; index: TarIndex }> {
  const t = await layerTar([
    { type: "dir", path: "etc" },
    { type: "file", path: "etc/a.txt", content: A, mode: 0o644 },
    { type: "file", path: "etc/b.txt", content: B, mode: 0o600 },
    { type: "whiteout", path: "etc/gone" },
  ]);
  const blob = gzipSync(t);
  return { blob, index: await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: MEDIA }) };
}

/** lib/m0.py to lib/m5.py, 1 MiB of noise each: each header in a span of its own. */
async function moduleLayer(): Promise<{ blob: Buffer; index: TarIndex }> {
  const t = await layerTar([
    { type: "dir", path: "lib" },
    ...Array.from({ length: 6 }, (_, i) => ({ type: "file" as const, path: `lib/m${i}.py`, content: noise(1 << 20, i + 1) })),
  ]);
  const blob = gzipSync(t);
  return { blob, index: await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: MEDIA }) };
}

/** A copy of `index` whose record at `path` `edit` changed. */
function forged(index: TarIndex, path: string, edit: (r: TarRecord, all: TarRecord[]) => void): TarIndex {
  const entries = index.entries.map((e) => ({ ...e, segments: e.segments.map((s) => ({ ...s })) }));
  const rec = entries.find((e) => e.path.replace(/^\.\//, "") === path);
  if (!rec) throw new Error(`no ${path}`);
  edit(rec, entries);
  return { ...index, entries };
}

describe("an index made elsewhere", () => {
  it("is served entry by entry once each entry matches its tar header", async () => {
    const { blob, index } = await layer();
    const untrusted = new TarLayerIndex(index, countingSource(blob), { untrusted: true });
    await untrusted.check?.("etc/a.txt");
    expect((await untrusted.readFile("etc/a.txt", 0, 100)).equals(A)).toBe(true);
    await untrusted.check?.("etc/.wh.gone");
    expect(untrusted.hasXattrs).toBe(true); // its claim of none is not believed
  });

  it("gets the headers of entries a workload looks up fetched ahead, so their checks wait for nothing", async () => {
    // big files between the entries, so each header sits in a span of its own
    const t = await layerTar([
      { type: "dir", path: "lib" },
      ...Array.from({ length: 6 }, (_, i) => ({ type: "file" as const, path: `lib/m${i}.py`, content: noise(1 << 20, i + 1) })),
      { type: "dir", path: "lib/pkg" },
      { type: "file", path: "lib/pkg/mod.py", content: noise(1 << 20, 9) },
    ]);
    const blob = gzipSync(t);
    const index = await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: MEDIA });
    const source = countingSource(blob);
    const queue = new FetchScheduler({ concurrency: 2 });
    const untrusted = new TarLayerIndex(index, source, { untrusted: true, queue });
    const queued = untrusted.fetchHeadersAhead([{ path: "lib/m4.py" }, { path: "lib/pkg/mod.py" }, { path: "no/such/entry" }], { priority: "soon", maxRequestBytes: 1 << 20 });
    expect(queued).toBeGreaterThan(0);
    expect(queued).toBeLessThan(blob.length / 2); // the headers' spans, not the layer
    await queue.idle();
    const fetched = source.calls.length;
    for (const p of ["lib/m4.py", "lib/pkg/mod.py", "lib/pkg", "lib"]) await untrusted.check?.(p);
    expect(source.calls.length).toBe(fetched); // every check found its header fetched
    await untrusted.check?.("lib/m1.py"); // one not looked up ahead fetches its own
    expect(source.calls.length).toBeGreaterThan(fetched);
  });

  it("queues each lookup's header at its place in the plan, and the layer's root first", async () => {
    const { blob, index } = await moduleLayer();
    const source = countingSource(blob);
    // a queue that runs each job at once and notes its rank
    const ranks: (number | undefined)[] = [];
    const queue: FetchQueue = { demand: (f) => f(), submit: (jobs) => jobs.forEach((j) => (ranks.push(j.rank), void j.run())) };
    const untrusted = new TarLayerIndex(index, source, { untrusted: true, queue });
    untrusted.fetchHeadersAhead([{ path: "lib/m5.py", rank: 40 }, { path: "lib/m1.py" }, { path: "lib/m3.py", rank: 42 }], { priority: "soon", rank: 0, maxRequestBytes: 1 << 20 });
    // the root, lib and m1 (no place) at rank 0; m5 and m3, read around the 40th file, together at 32
    // (one job per run of cells: this source takes one range a request)
    expect([...new Set(ranks)]).toEqual([0, 32]);
    expect(ranks).toEqual([...ranks].sort((a, b) => (a as number) - (b as number)));
    await new Promise((r) => setTimeout(r, 50));
    const calls = source.calls.length;
    for (const p of ["", "lib", "lib/m1.py", "lib/m3.py", "lib/m5.py"]) await untrusted.check?.(p);
    expect(source.calls.length).toBe(calls); // every check found its header fetched
  });

  it("checks a header without fetching the bytes after it; a file read that misses still reads ahead", async () => {
    const { blob, index } = await moduleLayer();
    const source = countingSource(blob);
    const queue = new FetchScheduler({ concurrency: 2 });
    const untrusted = new TarLayerIndex(index, source, { untrusted: true, queue });
    await untrusted.check?.("lib/m3.py");
    await queue.idle();
    const checked = source.requested;
    // from the span's access point to the first cell that reaches past the header, nothing after it
    const header = index.entries.find((e) => e.path.endsWith("lib/m3.py"))?.header as number;
    const cells = index.cells ?? [];
    const last = cells.findIndex((c) => c.reach >= header + CHECK_READ_BYTES);
    const reached = Math.max(...source.calls.map((c) => c.offset + c.length));
    expect(reached).toBeLessThanOrEqual((last + 1) * (index.cellSize as number));
    await untrusted.readFile("lib/m3.py", 600 << 10, 10);
    await queue.idle();
    expect(source.requested - checked).toBeGreaterThan(256 << 10); // the read's cell and the read-ahead after it
  });

  it("that points a file at another file's bytes, changes its size or its mode, is caught before anything is served", async () => {
    const { blob, index } = await layer();
    const b = index.entries.find((e) => e.path.endsWith("etc/b.txt")) as TarRecord;
    const cases: [string, TarIndex][] = [
      ["bytes", forged(index, "etc/a.txt", (r) => void (r.segments = b.segments.map((s) => ({ ...s, length: Math.min(s.length, r.size) }))))],
      ["size", forged(index, "etc/a.txt", (r) => void (r.size = B.length))],
      ["setuid", forged(index, "etc/a.txt", (r) => void (r.mode = 0o4755))],
      ["owner", forged(index, "etc/a.txt", (r) => void (r.uid = 1234))],
    ];
    for (const [what, bad] of cases) {
      const untrusted = new TarLayerIndex(bad, countingSource(blob), { untrusted: true });
      await expect(untrusted.check?.("etc/a.txt"), what).rejects.toThrow(IndexMismatchError);
    }
  });

  it("is dropped by the layer's view at the first lie, which then answers from the layer itself, correctly", async () => {
    const { blob, index } = await layer();
    const b = index.entries.find((e) => e.path.endsWith("etc/b.txt")) as TarRecord;
    const lying = forged(index, "etc/a.txt", (r) => {
      r.segments = b.segments;
      r.size = b.size;
    });
    let fellBack = 0;
    const view = new DeferredView(
      index.digest,
      async () => new TarLayerIndex(lying, countingSource(blob), { untrusted: true }),
      async () => {
        fellBack++;
        return new TarLayerIndex(index, countingSource(blob)); // what streaming the layer builds
      },
    );
    expect((await view.readFile("etc/a.txt", 0, 100)).equals(A)).toBe(true);
    expect((await view.getAttr("etc/a.txt"))?.size).toBe(A.length);
    expect(fellBack).toBe(1);
  });

  it("that leaves a whiteout out is caught when the whole blob is checked", async () => {
    const { index } = await layer();
    const hidden = { ...index, entries: index.entries.filter((e) => !e.path.endsWith(".wh.gone")) };
    expect(firstDifference(hidden.entries, index.entries)).toMatch(/entries, the tar has/);
    expect(firstDifference(index.entries, index.entries)).toBeUndefined();
    const moved = forged(index, "etc/a.txt", (r) => void (r.mtime = 1));
    expect(firstDifference(moved.entries, index.entries)).toMatch(/mtime/);
  });

  it("whose entries do not tile the tar (one left out between two files, an overlap, out of order) is refused before anything is served", async () => {
    const t = await layerTar([
      { type: "file", path: "a.txt", content: A },
      { type: "whiteout", path: "gone" },
      { type: "file", path: "b.txt", content: B },
    ]);
    const blob = gzipSync(t);
    const index = await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: MEDIA });
    expect(() => checkLayout(index.entries, index.uncompressedSize, index.digest)).not.toThrow();
    const without = index.entries.filter((e) => !e.path.endsWith(".wh.gone"));
    expect(() => checkLayout(without, index.uncompressedSize, index.digest)).toThrow(/leaves something out/);
    const overlap = forged(index, "a.txt", (r) => void (r.segments = r.segments.map((s) => ({ ...s, length: s.length + 600 }))));
    expect(() => checkLayout(overlap.entries, index.uncompressedSize, index.digest)).toThrow(/overlap/);
    expect(() => checkLayout([...index.entries].reverse(), index.uncompressedSize, index.digest)).toThrow(/before/);
    expect(() => checkLayout(index.entries, 1024, index.digest)).toThrow(/past the end/);
  });
});
