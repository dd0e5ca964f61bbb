// SIGKILL at any instant leaves no half-made snapshot and no orphan directory
// after the next start, and a restart shows identical List/Stat/Usage.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { startAugur, type Augur } from "../harness/augur.js";
import { removeScratch, scratchDir, unmountBelow } from "../harness/processes.js";
import { snapshotsClient, type SnapshotsClient } from "../harness/snapshots-client.js";
import { mountAll, unmount } from "../harness/mounts.js";

let dir: string;
let root: string;
let socket: string;

beforeAll(() => {
  dir = scratchDir("augur-crash-");
  root = join(dir, "root");
  socket = join(dir, "augur.sock");
});

afterAll(async () => {
  await unmountBelow(dir);
  await removeScratch(dir);
});

const start = (n: number): Promise<Augur> => startAugur(dir, { root, socket, logName: `augur-${n}.log` });

/** A workload that keeps creating, filling, committing and removing snapshots until it fails. */
async function workload(sn: SnapshotsClient, round: number, stop: { now: boolean }): Promise<void> {
  for (let i = 0; !stop.now; i++) {
    const name = `r${round}-c${i}`;
    const mounts = await sn.prepare(`${name}-active`, "");
    // Write the snapshot's content through its mount, as containerd's unpacker does.
    const target = join(dir, "mnt", name);
    mkdirSync(target, { recursive: true });
    await mountAll(mounts, target);
    try {
      writeFileSync(join(target, "content"), name);
    } finally {
      await unmount(target);
    }
    await sn.commit(name, `${name}-active`, { round: String(round) });
    await sn.prepare(`${name}-child`, name);
    await sn.view(`${name}-view`, name);
    if (i % 2 === 0) await sn.remove(`${name}-view`);
  }
}

/** Directory ids that rows name, and directories present, must be the same set. */
function assertNoOrphans(): void {
  const db = new Database(join(root, "metadata.db"), { readonly: true });
  try {
    const ids = db.prepare("SELECT id FROM snapshots").all().map((r) => String((r as { id: number }).id)).sort();
    expect(readdirSync(join(root, "s")).sort()).toEqual(ids);
  } finally {
    db.close();
  }
}

async function snapshotState(sn: SnapshotsClient): Promise<unknown> {
  const infos = (await sn.list()).sort((a, b) => a.name.localeCompare(b.name));
  return Promise.all(infos.map(async (info) => ({ info, stat: await sn.stat(info.name), usage: await sn.usage(info.name) })));
}

describe("crash safety", () => {
  it("SIGKILL at random instants during a busy workload never leaves half-made snapshots or orphans", async () => {
    // "any instant": 16 kills, each at a random moment of the workload's first 700 ms
    const delays = Array.from({ length: 16 }, () => 5 + Math.floor(Math.random() * 700));
    for (const [round, delay] of delays.entries()) {
      const augur = await start(round);
      const sn = snapshotsClient(socket, "default");
      const stop = { now: false };
      let killed = false;
      // the workload may only fail because augur was killed under it
      const running = workload(sn, round, stop).then(() => undefined, (err: unknown) => ({ err, killed }));
      await new Promise((r) => setTimeout(r, delay));
      killed = true;
      augur.proc.child.kill("SIGKILL");
      await augur.proc.exited;
      stop.now = true;
      const failed = await running;
      if (failed && !failed.killed) throw new Error(`round ${round}: the workload failed before augur was killed: ${String(failed.err)}`);
      sn.close();
      await unmountBelow(join(dir, "mnt"));
    }

    const augur = await start(100);
    const sn = snapshotsClient(socket, "default");
    try {
      // Start-up cleanup removed every directory no row refers to (new-*, rm-*, uncommitted ids).
      assertNoOrphans();
      const committed = await sn.list("kind==committed");
      expect(committed.length).toBeGreaterThan(3);
      // Every committed snapshot is whole: it holds exactly what was written before its commit.
      for (const info of committed) {
        const mounts = await sn.view(`check-${info.name}`, info.name);
        const target = join(dir, "mnt", `check-${info.name}`);
        mkdirSync(target, { recursive: true });
        await mountAll(mounts, target);
        try {
          expect(readFileSync(join(target, "content"), "utf8")).toBe(info.name);
        } finally {
          await unmount(target);
        }
        await sn.remove(`check-${info.name}`);
      }
    } finally {
      sn.close();
      await augur.stop();
    }
  });

  it("a restart (after SIGTERM or SIGKILL) shows identical List, Stat and Usage", async () => {
    let augur = await start(200);
    let sn = snapshotsClient(socket, "default");
    const before = await snapshotState(sn);
    sn.close();
    expect(await augur.stop("SIGKILL")).not.toBe(0);

    augur = await start(201);
    sn = snapshotsClient(socket, "default");
    expect(await snapshotState(sn)).toEqual(before);
    sn.close();
    expect(await augur.stop("SIGTERM")).toBe(0);

    augur = await start(202);
    sn = snapshotsClient(socket, "default");
    try {
      expect(await snapshotState(sn)).toEqual(before);
      assertNoOrphans();
    } finally {
      sn.close();
      await augur.stop();
    }
  });
});
