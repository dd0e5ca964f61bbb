// containerd's snapshotter test suite (snapshots/testsuite), ported case by case
// and run against a real `augur serve` over its gRPC socket, with real overlay
// and bind mounts of what it returns.
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { startAugur, type Augur } from "../harness/augur.js";
import { removeScratch, scratchDir, unmountBelow } from "../harness/processes.js";
import { snapshotsClient, type PbMount, type SnapshotsClient } from "../harness/snapshots-client.js";
import { mountAll, unmount } from "../harness/mounts.js";
import * as fst from "../harness/fstest.js";

const opt = { "containerd.io/gc.root": new Date().toISOString() };

let dir: string;
let work: string;
let augur: Augur;
let sn: SnapshotsClient;

beforeEach(async () => {
  // A root as short as the default /var/lib/augur, so 128 lowerdirs fit in one page (128LayersMount).
  dir = scratchDir("as-");
  work = join(dir, "w");
  mkdirSync(work);
  augur = await startAugur(dir, { root: join(dir, "r") });
  sn = snapshotsClient(augur.socket, "testsuite");
});

afterEach(async () => {
  sn.close();
  await unmountBelow(dir);
  await augur.stop();
  await removeScratch(dir);
});

async function withMount<T>(mounts: PbMount[], fn: (target: string) => T | Promise<T>, target = mkdtempSync(join(work, "m-"))): Promise<T> {
  mkdirSync(target, { recursive: true });
  await mountAll(mounts, target);
  try {
    return await fn(target);
  } finally {
    await unmount(target);
  }
}

let seq = 0;
async function createSnapshot(parent: string, applier: fst.Applier): Promise<string> {
  const name = `snap-${++seq}-${Math.random().toString(36).slice(2, 8)}`;
  const mounts = await sn.prepare(`${name}-prepare`, parent, opt);
  await withMount(mounts, applier);
  await sn.commit(name, `${name}-prepare`, opt);
  return name;
}

async function checkSnapshot(name: string, expectedDir: string): Promise<void> {
  const mounts = await sn.view(`${name}-view`, name, opt);
  try {
    await withMount(mounts, (target) => fst.checkDirectoryEqual(expectedDir, target));
  } finally {
    await sn.remove(`${name}-view`);
  }
}

/** Builds a chain of snapshots, one per applier, checking each against the same changes applied to one flat directory. */
async function checkSnapshots(...appliers: fst.Applier[]): Promise<void> {
  const flat = mkdtempSync(join(work, "flat-"));
  let parent = "";
  for (const a of appliers) {
    parent = await createSnapshot(parent, a);
    a(flat);
    await checkSnapshot(parent, flat);
  }
}

async function prepareMount(name: string, parent: string): Promise<string> {
  const target = join(work, name);
  mkdirSync(target, { recursive: true });
  await mountAll(await sn.prepare(target, parent, opt), target);
  return target;
}

const rejectsWith = (p: Promise<unknown>, code: status) => expect(p).rejects.toMatchObject({ code });

describe("containerd snapshotter suite", () => {
  it("Basic", async () => {
    const initial = fst.apply(fst.createFile("/foo", "foo\n", 0o777), fst.createDir("/a", 0o755), fst.createDir("/a/b", 0o755), fst.createDir("/a/b/c", 0o755));
    const diff = fst.apply(fst.createFile("/bar", "bar\n", 0o777), fst.createFile("/foo", "bar\n", 0o777), fst.removeAll("/a/b"));

    const preparing = join(work, "preparing");
    mkdirSync(preparing);
    const mounts = await sn.prepare(preparing, "", opt);
    expect(mounts.length).toBeGreaterThan(0);
    await withMount(mounts, initial, preparing);
    const committed = join(work, "committed");
    await sn.commit(committed, preparing, opt);
    const si = await sn.stat(committed);
    expect(si.parent).toBe("");
    expect(si.kind).toBe("COMMITTED");
    await rejectsWith(sn.stat(preparing), status.NOT_FOUND);

    const next = join(work, "nextlayer");
    await withMount(await sn.prepare(next, committed, opt), (t) => {
      const expected = mkdtempSync(join(work, "exp-"));
      initial(expected);
      fst.checkDirectoryEqual(expected, t);
      diff(t);
    }, next);
    const ni = await sn.stat(next);
    expect(ni.parent).toBe(committed);
    expect(ni.kind).toBe("ACTIVE");
    const nextCommitted = join(work, "committed-next");
    await sn.commit(nextCommitted, next, opt);
    const si2 = await sn.stat(nextCommitted);
    expect(si2.parent).toBe(committed);
    expect(si2.kind).toBe("COMMITTED");
    await rejectsWith(sn.stat(next), status.NOT_FOUND);

    const walked = new Map((await sn.list()).map((i) => [i.name, i]));
    expect(walked.get(committed)).toEqual(si);
    expect(walked.get(nextCommitted)).toEqual(si2);

    const nextnext = join(work, "nextnextlayer");
    await withMount(await sn.view(nextnext, nextCommitted, opt), (t) => {
      const expected = mkdtempSync(join(work, "exp-"));
      fst.apply(initial, diff)(expected);
      fst.checkDirectoryEqual(expected, t);
    }, nextnext);
    await sn.remove(nextnext);
    await rejectsWith(sn.remove(committed), status.FAILED_PRECONDITION);
    await sn.remove(nextCommitted);
    await sn.remove(committed);
  });

  it("StatActive", async () => {
    const preparing = await prepareMount("preparing", "");
    writeFileSync(join(preparing, "foo"), "foo\n");
    const si = await sn.stat(preparing);
    expect(si).toMatchObject({ name: preparing, kind: "ACTIVE", parent: "" });
    await unmount(preparing);
  });

  it("StatCommitted", async () => {
    const preparing = await prepareMount("preparing", "");
    writeFileSync(join(preparing, "foo"), "foo\n");
    await unmount(preparing);
    const committed = join(work, "committed");
    await sn.commit(committed, preparing, opt);
    expect(await sn.stat(committed)).toMatchObject({ name: committed, kind: "COMMITTED", parent: "" });
  });

  it("Transitivity", async () => {
    const preparing = await prepareMount("preparing", "");
    writeFileSync(join(preparing, "foo"), "foo\n");
    await unmount(preparing);
    const snapA = join(work, "snapA");
    await sn.commit(snapA, preparing, opt);
    const next = await prepareMount("next", snapA);
    writeFileSync(join(next, "foo"), "foo bar\n");
    await unmount(next);
    const snapB = join(work, "snapB");
    await sn.commit(snapB, next, opt);
    const siA = await sn.stat(snapA);
    const siB = await sn.stat(snapB);
    const siParentB = await sn.stat(siB.parent);
    expect(siA.parent).toBe("");
    expect(siB.parent).toBe(snapA);
    expect(siParentB.parent).toBe("");
  });

  it("PrepareView: the same key twice fails with ALREADY_EXISTS", async () => {
    await sn.prepare("preparing", "", opt);
    const snapA = join(work, "snapA");
    await sn.commit(snapA, "preparing", opt);
    await sn.prepare("newlayer", snapA, opt);
    await rejectsWith(sn.view("newlayer", snapA, opt), status.ALREADY_EXISTS);
    await sn.prepare("prepLayer", snapA, opt);
    await rejectsWith(sn.prepare("prepLayer", snapA, opt), status.ALREADY_EXISTS);
    await sn.view("viewLayer", snapA, opt);
    await rejectsWith(sn.view("viewLayer", snapA, opt), status.ALREADY_EXISTS);
  });

  it("Update", async () => {
    const t1 = Date.now();
    await sn.prepare("c1-a", "", opt);
    await sn.commit("c1", "c1-a", opt);
    await sn.prepare("c2-a", "c1", opt);
    await sn.commit("c2", "c2-a", opt);
    await sn.prepare("a1", "c2", opt);
    await sn.prepare("a2", "", opt);
    await sn.view("v1", "c2", opt);
    await sn.view("v2", "", opt);
    const t2 = Date.now();
    const cases = [
      { name: "c1", kind: "COMMITTED", parent: "" },
      { name: "c2", kind: "COMMITTED", parent: "c1" },
      { name: "a1", kind: "ACTIVE", parent: "c2" },
      { name: "a2", kind: "ACTIVE", parent: "" },
      { name: "v1", kind: "VIEW", parent: "c2" },
      { name: "v2", kind: "VIEW", parent: "" },
    ];
    const ms = (ts: { seconds: number; nanos: number } | null) => (ts ? Number(ts.seconds) * 1000 + ts.nanos / 1e6 : NaN);
    // Date.now() is a millisecond floor of times augur keeps to the nanosecond: compare floors above
    const floorMs = (ts: { seconds: number; nanos: number } | null) => Math.floor(ms(ts));
    for (const tc of cases) {
      let st = await sn.stat(tc.name);
      expect(ms(st.created_at)).toBeGreaterThanOrEqual(t1);
      expect(floorMs(st.created_at)).toBeLessThanOrEqual(t2);
      expect(st.updated_at).toEqual(st.created_at);
      expect(st).toMatchObject({ kind: tc.kind, parent: tc.parent, name: tc.name });
      const created = st.created_at;
      const rootTime = new Date().toISOString();
      let expected: Record<string, string> = { l1: "v1", l2: "v2", l3: "v3", "containerd.io/gc.root": rootTime };
      const u1 = Date.now();
      st = await sn.update({ ...st, parent: "doesnotexist", labels: expected });
      const u2 = Date.now();
      expect(st.created_at).toEqual(created);
      expect(ms(st.updated_at)).toBeGreaterThanOrEqual(u1);
      expect(floorMs(st.updated_at)).toBeLessThanOrEqual(u2);
      expect(st).toMatchObject({ kind: tc.kind, parent: tc.parent, name: tc.name });
      expect(st.labels).toEqual(expected);

      expected = { l1: "updated", l3: "v3", "containerd.io/gc.root": rootTime };
      st = await sn.update({ ...st, labels: { l1: "updated", l4: "v4" } }, ["labels.l1", "labels.l2"]);
      expect(st.labels).toEqual(expected);

      expected = { l4: "v4", "containerd.io/gc.root": rootTime };
      st = await sn.update({ ...st, labels: expected }, ["labels"]);
      expect(st.labels).toEqual(expected);

      await rejectsWith(sn.update({ ...st, parent: "doesnotexist" }, ["parent"]), status.INVALID_ARGUMENT);
      expect((await sn.stat(tc.name)).labels).toEqual(expected);
    }
  });

  it("Remove", async () => {
    await sn.prepare("committed-a", "", opt);
    await sn.commit("committed-1", "committed-a", opt);
    await sn.prepare("reuse-1", "committed-1", opt);
    await sn.remove("reuse-1");
    await sn.view("reuse-1", "committed-1", opt);
    await sn.remove("reuse-1");
    await sn.prepare("reuse-1", "", opt);
    await sn.remove("committed-1");
    await sn.commit("committed-1", "reuse-1", opt);
  });

  it("Walk with containerd filters", async () => {
    const gc = { "containerd.io/gc.root": "check-walk" };
    await sn.prepare("a-np", "", gc);
    await sn.prepare("p-tmp", "", gc);
    await sn.commit("p", "p-tmp", gc);
    await sn.prepare("a", "p", gc);
    await sn.view("v", "p", gc);
    await sn.prepare("p-wl-tmp", "", gc);
    await sn.commit("p-wl", "p-wl-tmp", { l: "1", ...gc });
    await sn.prepare("a-wl", "p-wl", { l: "2", ...gc });
    await sn.view("v-wl", "p-wl", { l: "3", ...gc });
    await sn.prepare("a-np-wl", "", { l: "2", ...gc });
    const cases: [string[], string[]][] = [
      [["a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"], ['labels."containerd.io/gc.root"==check-walk']],
      [["a-np", "a", "a-wl", "a-np-wl"], ['kind==active,labels."containerd.io/gc.root"==check-walk']],
      [["v", "v-wl"], ['kind==view,labels."containerd.io/gc.root"==check-walk']],
      [["p", "p-wl"], ['kind==committed,labels."containerd.io/gc.root"==check-walk']],
      [["p", "a-np-wl"], ["name==p", "name==a-np-wl"]],
      [["a-wl"], ["name==a-wl,labels.l"]],
      [["a", "v"], ["parent==p"]],
      [["a", "v", "a-wl", "v-wl"], ['parent!="",labels."containerd.io/gc.root"==check-walk']],
      [["p-wl", "a-wl", "v-wl", "a-np-wl"], ["labels.l"]],
      [["a-wl", "a-np-wl"], ["labels.l==2"]],
      [["a-wl", "a-np-wl", "v-wl"], ["labels.l~=^[23]$"]],
    ];
    for (const [matches, filters] of cases) {
      const names = (await sn.list(...filters)).map((i) => i.name).sort();
      expect(names, filters.join(" OR ")).toEqual([...matches].sort());
    }
  });

  it("LayerFileUpdate", async () => {
    const l1 = fst.apply(fst.createDir("/etc", 0o700), fst.createFile("/etc/hosts", "mydomain 10.0.0.1", 0o644), fst.createFile("/etc/profile", "PATH=/usr/bin", 0o644));
    const l2 = fst.apply(
      fst.createFile("/etc/hosts", "mydomain 10.0.0.2", 0o644),
      fst.createFile("/etc/profile", "PATH=/usr/bin", 0o666),
      fst.createDir("/root", 0o700),
      fst.createFile("/root/.bashrc", "PATH=/usr/sbin:/usr/bin", 0o644),
    );
    for (let i = 0; i < 2; i++) await checkSnapshots(l1, l2);
  });

  it("RemoveDirectoryInLowerLayer", async () => {
    await checkSnapshots(
      fst.apply(fst.createDir("/lib", 0o700), fst.createFile("/lib/hidden", "", 0o644)),
      fst.apply(fst.removeAll("/lib"), fst.createDir("/lib", 0o700), fst.createFile("/lib/not-hidden", "", 0o644)),
      fst.apply(fst.createFile("/lib/newfile", "", 0o644)),
    );
  });

  it("Chown", async () => {
    await checkSnapshots(
      fst.apply(fst.createDir("/opt", 0o700), fst.createDir("/opt/a", 0o700), fst.createDir("/opt/a/b", 0o700), fst.createFile("/opt/a/b/file.txt", "hello", 0o644)),
      fst.apply(fst.chown("/opt", 1, 1), fst.chown("/opt/a", 1, 1), fst.chown("/opt/a/b", 1, 1), fst.chown("/opt/a/b/file.txt", 1, 1)),
    );
  });

  it("DirectoryPermissionOnCommit", async () => {
    await checkSnapshots(
      fst.apply(
        fst.createDir("/dir1", 0o700), fst.createDir("/dir2", 0o700), fst.createDir("/dir3", 0o700), fst.createDir("/dir4", 0o700),
        fst.createFile("/dir4/f1", "...", 0o644), fst.createDir("/dir5", 0o700), fst.createFile("/dir5/f1", "...", 0o644),
        fst.chown("/dir1", 1, 1), fst.chown("/dir2", 1, 1), fst.chown("/dir3", 1, 1), fst.chown("/dir5", 1, 1), fst.chown("/dir5/f1", 1, 1),
      ),
      fst.apply(fst.chown("/dir2", 0, 0), fst.removeAll("/dir3"), fst.chown("/dir4", 1, 1), fst.chown("/dir4/f1", 1, 1)),
      fst.apply(fst.createDir("/dir3", 0o700), fst.chown("/dir3", 1, 1), fst.removeAll("/dir5"), fst.createDir("/dir5", 0o700), fst.chown("/dir5", 1, 1)),
    );
  });

  it("RemoveIntermediateSnapshot", async () => {
    const base = await prepareMount("base", "");
    await unmount(base);
    const committedBase = join(work, "committed-base");
    await sn.commit(committedBase, base, opt);
    const intermediate = join(work, "intermediate");
    await sn.prepare(intermediate, committedBase, opt);
    const committedInter = join(work, "committed-inter");
    await sn.commit(committedInter, intermediate, opt);
    const top = join(work, "toplayer");
    await sn.prepare(top, committedInter, opt);
    await rejectsWith(sn.remove(committedInter), status.FAILED_PRECONDITION);
    await sn.remove(top);
    await sn.remove(committedInter);
    await sn.remove(committedBase);
  });

  it("DeletedFilesInChildSnapshot", async () => {
    await checkSnapshots(fst.apply(fst.createFile("/foo", "foo\n", 0o777), fst.createFile("/foobar", "foobar\n", 0o777)), fst.apply(fst.removeAll("/foobar")), fst.apply());
  });

  it("MoveFileFromLowerLayer", async () => {
    await checkSnapshots(
      fst.apply(fst.createDir("/dir1", 0o700), fst.createFile("/dir1/f1", "Hello", 0o644), fst.createDir("dir2", 0o700), fst.createFile("dir2/f2", "...", 0o644)),
      fst.apply(fst.createDir("/dir3", 0o700), fst.createFile("/dir3/f1", "Hello", 0o644), fst.removeAll("/dir1"), fst.link("dir2/f2", "dir3/f2"), fst.removeAll("dir2/f2")),
    );
  });

  it("ViewReadonly", async () => {
    await sn.prepare(join(work, "preparing"), "", opt);
    const committed = join(work, "committed");
    await sn.commit(committed, join(work, "preparing"), opt);
    const view = join(work, "view");
    const m = await sn.view(view, committed, opt);
    await withMount(m, (target) => {
      expect(() => writeFileSync(join(target, "testfile"), "testcontent")).toThrow(/EROFS|read-only/);
    });
    await sn.remove(view);
    await sn.remove(committed);
  });

  it("StatInWalk", async () => {
    const p = "stats-in-walk-";
    await sn.prepare(`${p}c1-a`, "", opt);
    await sn.commit(`${p}c1`, `${p}c1-a`, opt);
    await sn.prepare(`${p}c2-a`, `${p}c1`, opt);
    await sn.commit(`${p}c2`, `${p}c2-a`, opt);
    await sn.prepare(`${p}a1`, `${p}c2`, opt);
    await sn.view(`${p}v1`, `${p}c2`, opt);
    const listed = (await sn.list()).filter((i) => i.name.startsWith(p));
    expect(listed).toHaveLength(4);
    for (const info of listed) expect(await sn.stat(info.name)).toEqual(info);
  });

  it("CloseTwice: SIGTERM twice shuts down once, cleanly", async () => {
    await sn.prepare("closeTwice-prepare", "", opt);
    await sn.commit("closeTwice", "closeTwice-prepare", opt);
    await sn.remove("closeTwice");
    augur.proc.child.kill("SIGTERM");
    augur.proc.child.kill("SIGTERM");
    expect(await augur.proc.exited).toBe(0);
    expect(() => statSync(augur.socket)).toThrow(/ENOENT/);
  });

  it("RootPermission", async () => {
    const preparing = await prepareMount("preparing", "");
    expect(statSync(preparing).mode & 0o777).toBe(0o755);
    await unmount(preparing);
  });

  it("128LayersMount", async () => {
    const lowest = fst.apply(
      fst.createFile("/bottom", "way at the bottom\n", 0o777),
      fst.createFile("/overwriteme", "FIRST!\n", 0o777),
      fst.createDir("/ADDHERE", 0o755),
      fst.createDir("/ONLYME", 0o755),
      fst.createFile("/ONLYME/bottom", "bye!\n", 0o777),
    );
    const appliers = [lowest];
    for (let i = 1; i <= 127; i++) {
      appliers.push(
        fst.apply(
          fst.createFile("/overwriteme", `${i} WAS HERE!\n`, 0o777),
          fst.createFile(`/ADDHERE/file-${i}`, "same\n", 0o755),
          fst.removeAll("/ONLYME"),
          fst.createDir("/ONLYME", 0o755),
          fst.createFile(`/ONLYME/file-${i}`, "only me!\n", 0o777),
        ),
      );
    }
    const flat = join(work, "flat");
    mkdirSync(flat);
    let parent = "";
    for (const [i, a] of appliers.entries()) {
      const preparing = join(work, `prepare-layer-${i}`);
      mkdirSync(preparing);
      const mounts = await sn.prepare(preparing, parent, opt);
      // containerd mounts with one mount(2) call: the options must fit in a page.
      for (const m of mounts) expect(m.options.join(",").length).toBeLessThan(4096);
      await withMount(mounts, (t) => {
        fst.checkDirectoryEqual(t, flat);
        a(flat);
        a(t);
        fst.checkDirectoryEqual(t, flat);
      }, preparing);
      rmSync(preparing, { recursive: true });
      parent = join(work, `committed-${i}`);
      await sn.commit(parent, preparing, opt);
    }
    const view = join(work, "fullview");
    await withMount(await sn.view(view, parent, opt), (t) => fst.checkDirectoryEqual(t, flat), view);
  });
});
