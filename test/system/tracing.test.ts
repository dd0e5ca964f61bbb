// Access traces through containerd: containers pulled lazily with
// `ctr-remote images rpull` and run with `ctr run`; what each one read is
// checked with `augur trace`, as an operator would. Two images share their
// base layer and run at the same time: each trace must hold its own
// container's reads and none of the other's. Native copies are off, so every
// run reads through FUSE (a natively copied layer is not traced).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { appendFileSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { AUGUR_BIN, startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type LayerEntry } from "../../scripts/images/oci-image.js";

interface ExportedAccess {
  trace: string;
  signature?: string;
  t: number;
  op: string;
  layer: string;
  path: string;
  offset?: number;
  length?: number;
  size?: number;
  pid?: number;
}

const base: LayerEntry[] = [
  ...busyboxLayer(),
  { type: "dir", path: "shared" },
  { type: "file", path: "shared/common.txt", content: "common\n" },
  { type: "file", path: "shared/for-a.txt", content: "read by a only\n" },
  { type: "file", path: "shared/for-b.txt", content: "read by b only\n" },
  ...Array.from({ length: 40 }, (_, i): LayerEntry => ({ type: "file", path: `shared/many/f${i}`, content: `file ${i} `.repeat(200) })),
];
const appLayer = (name: string): LayerEntry[] => [
  { type: "dir", path: name },
  { type: "file", path: `${name}/only-${name}.txt`, content: `app ${name}\n` },
];

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
const refs = { a: "", b: "" };

const augurCli = (args: string[]) => run(process.execPath, [AUGUR_BIN, ...args], { timeoutMs: 30_000 });
async function augurOk(args: string[]): Promise<string> {
  const r = await augurCli(args);
  if (r.code !== 0) throw new Error(`augur ${args.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
const exported = async (root: string, id?: string): Promise<ExportedAccess[]> =>
  (await augurOk(["trace", "export", "--root", root, ...(id ? [id] : [])])).split("\n").filter(Boolean).map((l) => JSON.parse(l) as ExportedAccess);

/** Trace IDs in `augur trace ls` order (oldest first), with their container column. */
async function traceList(root: string): Promise<{ id: string; container: string; state: string }[]> {
  const lines = (await augurOk(["trace", "ls", "--root", root])).split("\n").filter(Boolean);
  expect(lines[0]).toMatch(/^ID\s+STARTED\s+NAMESPACE\s+CONTAINER\s+IMAGE\s+ACCESSES\s+FILES\s+READ\s+STATE$/);
  return lines.slice(1).map((l) => {
    const cols = l.split(/\s{2,}/);
    return { id: cols[0] as string, container: cols[3] as string, state: cols[cols.length - 1] as string };
  });
}

const rpull = async (c: Containerd, ref: string): Promise<void> => {
  const r = await run("ctr-remote", ["--address", c.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`rpull ${ref}: ${r.stderr}`);
};
const ctrRun = (c: Containerd, ref: string, id: string, script: string) =>
  c.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, id, "sh", "-c", script], 120_000);

beforeAll(async () => {
  dir = scratchDir("as-trace-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy"] });
  containerd = await startContainerd(dir, augur.socket);
  for (const name of ["a", "b"] as const) {
    const image = await buildImage(join(dir, `img-${name}`), { layers: [base, appLayer(name)], cmd: ["/bin/sh"] });
    refs[name] = `${registry.host}/trace/${name}:1`;
    pushImage(image, refs[name]);
    await rpull(containerd, refs[name]);
  }
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("access traces through containerd", () => {
  it("two containers sharing a base layer, running at once, each get exactly their own accesses", async () => {
    // Both wait until both have started, so their reads of the shared layer interleave.
    const script = (name: string): string =>
      `touch /tmp/started; sleep 1; cat /shared/common.txt /shared/for-${name}.txt /${name}/only-${name}.txt; cat /shared/many/* > /dev/null`;
    const [outA, outB] = await Promise.all([ctrRun(containerd, refs.a, "trace-a", script("a")), ctrRun(containerd, refs.b, "trace-b", script("b"))]);
    expect(outA).toBe("common\nread by a only\napp a\n");
    expect(outB).toBe("common\nread by b only\napp b\n");
    const traces = await traceList(augur.root);
    const ta = traces.find((t) => t.container === "trace-a");
    const tb = traces.find((t) => t.container === "trace-b");
    expect(ta?.state).toBe("ended (removed)");
    expect(tb?.state).toBe("ended (removed)");
    const a = await exported(augur.root, ta?.id);
    const b = await exported(augur.root, tb?.id);
    const opened = (xs: ExportedAccess[]): Set<string> => new Set(xs.filter((x) => x.op === "open").map((x) => x.path));
    // each read its own files, in the shared layer and in its own
    expect(opened(a)).toContain("shared/for-a.txt");
    expect(opened(a)).toContain("a/only-a.txt");
    expect(opened(b)).toContain("shared/for-b.txt");
    expect(opened(b)).toContain("b/only-b.txt");
    // and nothing only the other one read
    expect(opened(a)).not.toContain("shared/for-b.txt");
    expect(opened(a)).not.toContain("b/only-b.txt");
    expect(opened(b)).not.toContain("shared/for-a.txt");
    expect(opened(b)).not.toContain("a/only-a.txt");
    // both opened every shared file (opens reach augur even when the other container's reads put the pages in the kernel's cache)
    for (const xs of [a, b]) for (let i = 0; i < 40; i++) expect(opened(xs)).toContain(`shared/many/f${i}`);
    // reads carry offsets and lengths, opens the file size; the shared layer is one digest in both
    const readA = a.find((x) => x.op === "read" && x.path === "a/only-a.txt");
    expect(readA).toMatchObject({ offset: 0 });
    expect(readA?.length).toBeGreaterThan(0);
    expect(a.find((x) => x.op === "open" && x.path === "shared/for-a.txt")?.size).toBe("read by a only\n".length);
    const sharedLayer = a.find((x) => x.path === "shared/common.txt")?.layer;
    expect(b.find((x) => x.path === "shared/common.txt")?.layer).toBe(sharedLayer);
  }, 180_000);

  it("a container run twice gives two traces with one workload signature, and the show command names it", async () => {
    const script = "cat /shared/common.txt /a/only-a.txt";
    await ctrRun(containerd, refs.a, "twice", script);
    await ctrRun(containerd, refs.a, "twice", script);
    const runs = (await traceList(augur.root)).filter((t) => t.container === "twice");
    expect(runs).toHaveLength(2);
    const [first, second] = await Promise.all(runs.map((t) => exported(augur.root, t.id)));
    const sig = first?.[0]?.signature;
    expect(sig).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(second?.[0]?.signature).toBe(sig);
    // a different command is a different workload
    const other = (await traceList(augur.root)).find((t) => t.container === "trace-a");
    expect((await exported(augur.root, other?.id))[0]?.signature).not.toBe(sig);
    const shown = await augurOk(["trace", "show", "--root", augur.root, (runs[0]?.id ?? "").slice(0, 6)]);
    expect(shown).toContain(`signature  ${sig}`);
    expect(shown).toContain(`container  default/twice`);
    expect(shown).toContain(`image      ${refs.a}`);
    expect(shown).toContain(`args       ${JSON.stringify(["sh", "-c", script])}`);
    expect(shown).toMatch(/open\s+[0-9a-f]{12}\s+\/a\/only-a\.txt\s+size 6/);
  }, 180_000);

  it("trace commands give clear errors for unknown IDs and a missing root, and work without augur serve", async () => {
    const unknown = await augurCli(["trace", "show", "--root", augur.root, "ffffffffffff"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain('no trace "ffffffffffff"');
    const missing = await augurCli(["trace", "ls", "--root", join(dir, "no-such-root")]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain("does not exist");
    const noId = await augurCli(["trace", "show", "--root", augur.root]);
    expect(noId.code).toBe(1);
    expect(noId.stderr).toContain("takes one trace ID");
    const badSub = await augurCli(["trace", "list", "--root", augur.root]);
    expect(badSub.code).toBe(1);
    expect(badSub.stderr).toContain('unknown trace command "list"');
  }, 60_000);

  it("traces survive SIGKILL of augur and a restart; a torn last line is skipped, and new containers are traced", async () => {
    await ctrRun(containerd, refs.b, "before-kill", "cat /shared/common.txt /b/only-b.txt");
    const before = (await traceList(augur.root)).find((t) => t.container === "before-kill");
    expect(before?.state).toBe("ended (removed)");
    const wanted = await exported(augur.root, before?.id);
    // A container is reading while augur dies (no --rm: its record outlives the kill, as a crashed node's would).
    const reading = containerd.ctr(["run", "--snapshotter", "augur", refs.a, "killed-mid-run", "sh", "-c", "for i in $(seq 0 39); do cat /shared/many/f$i > /dev/null; sleep 0.05; done; sleep 60"], 120_000);
    await waitFor("the reading container to be traced", async () => (await traceList(augur.root)).some((t) => t.container === "killed-mid-run"), 60_000);
    await waitFor("its reads to reach the trace", async () => {
      const id = (await traceList(augur.root)).find((t) => t.container === "killed-mid-run")?.id;
      return (await exported(augur.root, id)).filter((x) => x.op === "open" && x.path.startsWith("shared/many/")).length >= 10;
    }, 60_000);
    await augur.stop("SIGKILL");
    await containerd.ctr(["tasks", "kill", "-s", "SIGKILL", "killed-mid-run"]);
    await reading;
    const killed = (await traceList(augur.root)).find((t) => t.container === "killed-mid-run");
    const atKill = await exported(augur.root, killed?.id);
    // what a crash in the middle of a write leaves: a torn last line
    appendFileSync(join(augur.root, "traces", `${killed?.id}.jsonl`), '{"kind":"access","t":12');
    augur = await startAugur(dir, { root: augur.root, socket: augur.socket, extraArgs: ["--no-native-copy"], logName: "augur-2.log" });
    await containerd.reachSnapshotter();
    // the finished trace reads back exactly as before, the killed one as far as it was written
    expect(await exported(augur.root, before?.id)).toEqual(wanted);
    expect(atKill.filter((x) => x.path.startsWith("shared/many/")).length).toBeGreaterThanOrEqual(10);
    expect(await exported(augur.root, killed?.id)).toEqual(atKill);
    expect(await augurOk(["trace", "show", "--root", augur.root, killed?.id ?? ""])).toContain("1 unreadable lines skipped");
    // containerd removes the dead container and its snapshot: the trace ends, on a line of its own
    await containerd.ctrOk(["containers", "delete", "killed-mid-run"]);
    await waitFor("the killed container's trace to end", async () => (await traceList(augur.root)).find((t) => t.id === killed?.id)?.state === "ended (removed)", 30_000);
    expect(await exported(augur.root, killed?.id)).toEqual(atKill);
    // a new container after the restart gets a trace of its own
    await ctrRun(containerd, refs.a, "after-restart", "cat /a/only-a.txt");
    const after = (await traceList(augur.root)).find((t) => t.container === "after-restart");
    expect(await exported(augur.root, after?.id)).toEqual(expect.arrayContaining([expect.objectContaining({ op: "open", path: "a/only-a.txt" })]));
  }, 240_000);

  it("the traces stay within --trace-size over many container runs, oldest dropped first", async () => {
    const limit = 48 * 1024;
    const root = join(dir, "bounded");
    const c2dir = join(dir, "c2");
    mkdirSync(c2dir);
    const small = await startAugur(c2dir, { root, socket: join(dir, "bounded.sock"), extraArgs: ["--no-native-copy", "--trace-size", String(limit)] });
    const c2 = await startContainerd(c2dir, small.socket).catch(async (err: unknown) => {
      await small.stop();
      throw err;
    });
    try {
      await rpull(c2, refs.a);
      const sizes: number[] = [];
      for (let i = 0; i < 8; i++) {
        await ctrRun(c2, refs.a, `bounded-${i}`, "cat /shared/many/* > /dev/null; cat /a/only-a.txt > /dev/null");
        const traceDir = join(root, "traces");
        sizes.push(readdirSync(traceDir).reduce((n, f) => n + statSync(join(traceDir, f)).size, 0));
      }
      for (const s of sizes) expect(s).toBeLessThanOrEqual(limit);
      const left = await traceList(root);
      // the newest run is always kept; the oldest went
      expect(left.map((t) => t.container)).toContain("bounded-7");
      expect(left.map((t) => t.container)).not.toContain("bounded-0");
    } finally {
      await c2.stop();
      await small.stop();
    }
  }, 240_000);
});
