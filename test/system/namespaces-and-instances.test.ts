// Namespaces keep snapshots apart; several augur instances run side by side;
// SIGTERM releases everything; a second augur cannot take a root or socket in use.
import { afterEach, describe, expect, it } from "vitest";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { request } from "node:http";
import { status } from "@grpc/grpc-js";
import { AUGUR_BIN, startAugur, type Augur } from "../harness/augur.js";
import { removeScratch, run, scratchDir } from "../harness/processes.js";
import { snapshotsClient } from "../harness/snapshots-client.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function fresh(prefix: string): Promise<{ dir: string; augur: Augur }> {
  const dir = scratchDir(prefix);
  const augur = await startAugur(dir);
  cleanups.push(async () => {
    await augur.stop();
    await removeScratch(dir);
  });
  return { dir, augur };
}

function httpGet(socketPath: string, path: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path }, (res) => {
      let body = "";
      res.on("data", (c: Buffer) => (body += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("namespaces", () => {
  it("the same key in two namespaces are two snapshots; no namespace sees all (as containerd's GC does)", async () => {
    const { augur } = await fresh("augur-ns-");
    const a = snapshotsClient(augur.socket, "team-a");
    const b = snapshotsClient(augur.socket, "team-b");
    const gc = snapshotsClient(augur.socket, null);
    try {
      await a.prepare("shared-key", "", { owner: "a" });
      await b.prepare("shared-key", "", { owner: "b" });
      await a.prepare("only-a", "");
      expect((await a.stat("shared-key")).labels).toEqual({ owner: "a" });
      expect((await b.stat("shared-key")).labels).toEqual({ owner: "b" });
      expect((await a.list()).map((i) => i.name).sort()).toEqual(["only-a", "shared-key"]);
      expect((await b.list()).map((i) => i.name)).toEqual(["shared-key"]);
      await expect(b.stat("only-a")).rejects.toMatchObject({ code: status.NOT_FOUND });
      expect((await gc.list()).length).toBe(3);
      await expect(gc.stat("shared-key")).rejects.toMatchObject({ code: status.FAILED_PRECONDITION });
      await expect(gc.stat("shared-key")).rejects.toThrow(/exists in several namespaces/);
      await gc.remove("only-a");
      await b.remove("shared-key");
      expect((await a.stat("shared-key")).labels).toEqual({ owner: "a" });
      expect((await gc.list()).map((i) => i.name)).toEqual(["shared-key"]);
    } finally {
      for (const c of [a, b, gc]) c.close();
    }
  });
});

describe("instances", () => {
  it("three instances side by side each keep to their own root, socket and API socket", async () => {
    const instances = [await fresh("augur-i1-"), await fresh("augur-i2-"), await fresh("augur-i3-")];
    for (const [i, { augur }] of instances.entries()) {
      const c = snapshotsClient(augur.socket, "default");
      await c.prepare(`only-in-${i}`, "");
      expect((await c.list()).map((x) => x.name)).toEqual([`only-in-${i}`]);
      c.close();
      const health = await httpGet(augur.apiSocket, "/healthz");
      expect(health).toEqual({ status: 200, body: "ok\n" });
      const metrics = await httpGet(augur.apiSocket, "/metrics");
      expect(metrics.body).toMatch(/augur_snapshots\{kind="active"\} 1/);
      expect(metrics.body).toMatch(/augur_grpc_requests_total\{method="Prepare",code="OK"\} 1/);
    }
  });

  it("SIGTERM removes the gRPC and API sockets and exits 0", async () => {
    const { augur } = await fresh("augur-term-");
    expect(existsSync(augur.socket) && existsSync(augur.apiSocket)).toBe(true);
    expect(await augur.stop("SIGTERM")).toBe(0);
    expect(existsSync(augur.socket)).toBe(false);
    expect(existsSync(augur.apiSocket)).toBe(false);
  });

  it("a second augur refuses a root or a socket already in use, and the first keeps serving", async () => {
    const { dir, augur } = await fresh("augur-dup-");
    const sameRoot = await run(process.execPath, [AUGUR_BIN, "serve", "--root", augur.root, "--socket", join(dir, "other.sock")]);
    expect(sameRoot.code).not.toBe(0);
    expect(sameRoot.stderr).toMatch(/root .* is in use by augur pid \d+/);
    const sameSocket = await run(process.execPath, [AUGUR_BIN, "serve", "--root", join(dir, "other-root"), "--socket", augur.socket]);
    expect(sameSocket.code).not.toBe(0);
    expect(sameSocket.stderr).toMatch(/socket .* is already being served/);
    const c = snapshotsClient(augur.socket, "default");
    await c.prepare("still-fine", "");
    c.close();
  });

  it("bad command lines and config files are rejected with a clear message", async () => {
    const dir = scratchDir("augur-cli-");
    cleanups.push(() => removeScratch(dir));
    const unknownFlag = await run(process.execPath, [AUGUR_BIN, "serve", "--bogus"]);
    expect(unknownFlag.code).not.toBe(0);
    expect(unknownFlag.stderr).toMatch(/Unknown option '--bogus'/);
    const { writeFileSync } = await import("node:fs");
    writeFileSync(join(dir, "bad.toml"), 'root = "/tmp/x"\nsokcet = "/tmp/y"\n');
    const badConfig = await run(process.execPath, [AUGUR_BIN, "serve", "--config", join(dir, "bad.toml")]);
    expect(badConfig.code).not.toBe(0);
    expect(badConfig.stderr).toMatch(/unknown setting "sokcet"/);
    const unknownCmd = await run(process.execPath, [AUGUR_BIN, "frobnicate"]);
    expect(unknownCmd.stderr).toMatch(/unknown command "frobnicate"/);
  });
});
