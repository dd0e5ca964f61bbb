// Bad requests get containerd's error codes and clear messages, and change nothing.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { startAugur, type Augur } from "../harness/augur.js";
import { removeScratch, scratchDir } from "../harness/processes.js";
import { snapshotsClient, type PbInfo, type SnapshotsClient } from "../harness/snapshots-client.js";

const { status } = grpc;
let dir: string;
let augur: Augur;
let sn: SnapshotsClient;

beforeAll(async () => {
  dir = scratchDir("augur-bad-");
  augur = await startAugur(dir);
  sn = snapshotsClient(augur.socket, "default");
  await sn.prepare("base-a", "");
  await sn.commit("base", "base-a", { keep: "me" });
  await sn.prepare("active", "base");
  await sn.view("view", "base");
});

afterAll(async () => {
  sn?.close();
  await augur?.stop();
  await removeScratch(dir);
});

/** What a user could observe of the store: every snapshot's info and every directory. */
async function observable(): Promise<{ infos: PbInfo[]; dirs: string[] }> {
  return { infos: await sn.list(), dirs: readdirSync(join(augur.root, "s")).sort() };
}

async function expectError(call: () => Promise<unknown>, code: grpc.status, message: RegExp): Promise<void> {
  const before = await observable();
  const err = (await call().then(
    () => undefined,
    (e: unknown) => e,
  )) as grpc.ServiceError | undefined;
  expect(err, "call should fail").toBeDefined();
  expect(status[err?.code ?? 0]).toBe(status[code]);
  expect(err?.details).toMatch(message);
  expect(await observable()).toEqual(before);
}

describe("bad input", () => {
  it("empty keys and names are INVALID_ARGUMENT", async () => {
    await expectError(() => sn.prepare(""), status.INVALID_ARGUMENT, /key must not be empty/);
    await expectError(() => sn.view(""), status.INVALID_ARGUMENT, /key must not be empty/);
    await expectError(() => sn.stat(""), status.INVALID_ARGUMENT, /key must not be empty/);
    await expectError(() => sn.commit("", "active"), status.INVALID_ARGUMENT, /name must not be empty/);
  });

  it("unknown keys are NOT_FOUND", async () => {
    await expectError(() => sn.stat("nope"), status.NOT_FOUND, /"nope" does not exist/);
    await expectError(() => sn.mounts("nope"), status.NOT_FOUND, /"nope" does not exist/);
    await expectError(() => sn.usage("nope"), status.NOT_FOUND, /"nope" does not exist/);
    await expectError(() => sn.remove("nope"), status.NOT_FOUND, /"nope" does not exist/);
    await expectError(() => sn.commit("x", "nope"), status.NOT_FOUND, /"nope" does not exist/);
    await expectError(() => sn.update({ name: "nope", labels: { a: "b" } }), status.NOT_FOUND, /"nope" does not exist/);
    await expectError(() => sn.prepare("child", "missing-parent"), status.NOT_FOUND, /parent snapshot "missing-parent" does not exist/);
  });

  it("a parent that is not committed is INVALID_ARGUMENT", async () => {
    await expectError(() => sn.prepare("child", "active"), status.INVALID_ARGUMENT, /parent "active" is not a committed snapshot/);
    await expectError(() => sn.view("child", "view"), status.INVALID_ARGUMENT, /parent "view" is not a committed snapshot/);
  });

  it("committing a view or a committed snapshot is FAILED_PRECONDITION", async () => {
    await expectError(() => sn.commit("c", "view"), status.FAILED_PRECONDITION, /"view" is a view snapshot, only active snapshots can be committed/);
    await expectError(() => sn.commit("c", "base"), status.FAILED_PRECONDITION, /is a committed snapshot/);
  });

  it("mounts of a committed snapshot and removing a parent are FAILED_PRECONDITION", async () => {
    await expectError(() => sn.mounts("base"), status.FAILED_PRECONDITION, /committed/);
    await expectError(() => sn.remove("base"), status.FAILED_PRECONDITION, /other snapshots use it as their parent/);
  });

  it("duplicate keys and names are ALREADY_EXISTS", async () => {
    await expectError(() => sn.prepare("active", "base"), status.ALREADY_EXISTS, /"active" already exists/);
    await expectError(() => sn.view("base"), status.ALREADY_EXISTS, /"base" already exists/);
    await expectError(() => sn.commit("base", "active"), status.ALREADY_EXISTS, /"base" already exists/);
  });

  it("labels over containerd's 4096-byte limit are INVALID_ARGUMENT everywhere", async () => {
    const big = { huge: "x".repeat(4096) };
    await expectError(() => sn.prepare("big", "", big), status.INVALID_ARGUMENT, /"huge" is 4100 bytes .* at most 4096/);
    await expectError(() => sn.view("big", "base", big), status.INVALID_ARGUMENT, /at most 4096/);
    await expectError(() => sn.commit("big", "active", big), status.INVALID_ARGUMENT, /at most 4096/);
    await expectError(() => sn.update({ name: "base", labels: big }, ["labels.huge"]), status.INVALID_ARGUMENT, /at most 4096/);
    expect((await sn.stat("base")).labels).toEqual({ keep: "me" });
  });

  it("immutable fields and unknown field paths in Update are INVALID_ARGUMENT", async () => {
    for (const path of ["name", "parent", "kind", "created_at", "bogus"]) {
      await expectError(() => sn.update({ name: "base", labels: {} }, [path]), status.INVALID_ARGUMENT, new RegExp(`cannot update "${path}"`));
    }
    await expectError(() => sn.update({ name: "" }), status.INVALID_ARGUMENT, /key must not be empty/);
  });

  it("malformed filters are INVALID_ARGUMENT", async () => {
    await expectError(() => sn.list("name=="), status.INVALID_ARGUMENT, /invalid filter "name==": expected value/);
    await expectError(() => sn.list('labels."unterminated'), status.INVALID_ARGUMENT, /quoted literal not terminated/);
    await expectError(() => sn.list("name~=("), status.INVALID_ARGUMENT, /bad regular expression/);
    await expectError(() => sn.list("name=!x"), status.INVALID_ARGUMENT, /unknown operator/);
  });

  it("bytes that are not a protobuf message are rejected and the daemon keeps serving", async () => {
    const before = await observable();
    const err = await new Promise<grpc.ServiceError | null>((resolve) => {
      sn.raw.makeUnaryRequest(
        "/containerd.services.snapshots.v1.Snapshots/Prepare",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]),
        (e) => resolve(e),
      );
    });
    expect(err?.code).toBe(status.INTERNAL);
    expect(await observable()).toEqual(before);
  });

  it("concurrent Prepare of one key from many clients: exactly one wins", async () => {
    const clients = Array.from({ length: 8 }, () => snapshotsClient(augur.socket, "default"));
    try {
      const results = await Promise.allSettled(clients.map((c) => c.prepare("raced", "base")));
      expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
      for (const r of results.filter((r): r is PromiseRejectedResult => r.status === "rejected")) {
        expect((r.reason as grpc.ServiceError).code).toBe(status.ALREADY_EXISTS);
      }
      expect((await sn.list("name==raced")).length).toBe(1);
      await sn.remove("raced");
    } finally {
      for (const c of clients) c.close();
    }
  });
});
