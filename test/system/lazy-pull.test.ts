// Lazy pulling through containerd: `ctr-remote images rpull --snapshotter augur`
// takes every layer over (FUSE mounts, ALREADY_EXISTS), containers run from
// them, and the registry's access log shows what was fetched. Covers eStargz,
// plain gzip and zstd images, a second node that has only the index, a
// tampered blob, the registry going away mid-run, and an augur restart.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { randomBytes, createHash } from "node:crypto";
import { cpSync, existsSync, openSync, readSync, writeSync, closeSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage, type LayerEntry } from "../../scripts/images/oci-image.js";
import { estargzManifest, pushEstargzOf } from "../harness/estargz.js";

const BIG = randomBytes(10 << 20); // incompressible: its layer is mostly this file
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

/** The image's layers; `variant` makes each image's chain IDs its own. */
const layers = (variant: string): LayerEntry[][] => [
  [...busyboxLayer(), { type: "file", path: "etc/variant", content: `${variant}\n` }],
  [
    { type: "dir", path: "app" },
    { type: "file", path: "app/hello.txt", content: "hello from layer 2\n" },
    { type: "file", path: "app/gone.txt", content: "deleted by layer 3\n" },
    { type: "symlink", path: "app/link", target: "hello.txt" },
    { type: "dir", path: "data" },
    { type: "file", path: "data/old1", content: "old\n" },
    { type: "dir", path: "big" },
    { type: "file", path: "big/random.bin", content: BIG },
  ],
  [
    { type: "whiteout", path: "app/gone.txt" },
    { type: "file", path: "app/third.txt", content: "from layer 3\n" },
    { type: "dir", path: "data" },
    { type: "opaque", path: "data" },
    { type: "file", path: "data/new.txt", content: "new\n" },
  ],
];

/** What the container prints when every layer is read and whiteouts hold. */
const PROBE = "cat /app/hello.txt /app/third.txt; cat /app/link; ls /data; [ -e /app/gone.txt ] || echo gone-ok";
const PROBE_OUT = "hello from layer 2\nfrom layer 3\nhello from layer 2\nnew.txt\ngone-ok\n";

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let plain: BuiltImage;
let zstd: BuiltImage;
const refs = { plain: "", zstd: "", estargz: "" };
let estargzLayers: { digest: string; size: number }[] = [];

/** Bytes the registry sent for GETs of `digests` in log text. */
function blobBytes(log: string, digests: string[]): number {
  let total = 0;
  for (const m of log.matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" (\d{3}) (\d+)/g)) {
    if (digests.includes(m[1] as string) && (m[2] === "200" || m[2] === "206")) total += Number(m[3]);
  }
  return total;
}

const rpull = (c: Containerd, ref: string) =>
  run("ctr-remote", ["--address", c.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });

async function runProbe(c: Containerd, ref: string, id: string, script = PROBE): Promise<{ code: number; stdout: string; stderr: string }> {
  return c.ctr(["run", "--snapshotter", "augur", "--rm", ref, id, "sh", "-c", script], 120_000);
}

beforeAll(async () => {
  dir = scratchDir("as-lazy-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r") });
  containerd = await startContainerd(dir, augur.socket);
  plain = await buildImage(join(dir, "plain"), { layers: layers("plain"), cmd: ["/bin/sh"] });
  zstd = await buildImage(join(dir, "zstd"), { layers: layers("zstd"), cmd: ["/bin/sh"], compression: "zstd" });
  refs.plain = `${registry.host}/lazy/plain:1`;
  refs.zstd = `${registry.host}/lazy/zstd:1`;
  refs.estargz = `${registry.host}/lazy/estargz:1`;
  pushImage(plain, refs.plain);
  pushImage(zstd, refs.zstd);
  // eStargz, converted the way users do it, in a namespace of its own.
  await pushEstargzOf(containerd, refs.plain, refs.estargz);
  const manifest = await estargzManifest(containerd, refs.estargz);
  expect(manifest.layers.every((l) => l.annotations?.["containerd.io/snapshot/stargz/toc.digest"])).toBe(true);
  estargzLayers = manifest.layers;
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("lazy pulling through containerd", () => {
  it("eStargz: rpull takes every layer over and the container runs having fetched a fraction of the image", async () => {
    const before = (await registry.settledLog()).length;
    const pulled = await rpull(containerd, refs.estargz);
    expect(pulled.code, pulled.stderr).toBe(0);
    const out = await runProbe(containerd, refs.estargz, "esgz-1");
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe(PROBE_OUT);
    const digests = estargzLayers.map((l) => l.digest);
    const total = estargzLayers.reduce((n, l) => n + l.size, 0);
    const fetched = blobBytes((await registry.settledLog()).slice(before), digests);
    expect(fetched).toBeGreaterThan(0);
    expect(fetched).toBeLessThan(total * 0.3); // the 10 MiB file was never read
    expect(augur.proc.log()).toMatch(/layer mounted lazily .*format=estargz/);
    // containerd committed nothing itself: every layer is augur's FUSE mount.
    const mounts = await run("sh", ["-c", `grep -c ' ${augur.root}/s/[0-9]*/fs ' /proc/self/mountinfo`]);
    expect(Number(mounts.stdout.trim())).toBeGreaterThanOrEqual(3);
  });

  it("reads a large file lazily and byte-exact", async () => {
    const out = await runProbe(containerd, refs.estargz, "esgz-2", "md5sum /big/random.bin; stat -c '%s %a %u' /big/random.bin");
    expect(out.stdout).toBe(`${md5(BIG)}  /big/random.bin\n${BIG.length} 644 0\n`);
  });

  it("plain gzip (first contact streams and indexes each layer) runs with every layer and whiteout right", async () => {
    const pulled = await rpull(containerd, refs.plain);
    expect(pulled.code, pulled.stderr).toBe(0);
    const out = await runProbe(containerd, refs.plain, "plain-1");
    expect(out.stdout).toBe(PROBE_OUT);
    expect(augur.proc.log()).toMatch(/layer mounted lazily .*format=first-contact/);
    const info = await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "info", chainTop(plain)]);
    expect(info).toContain("containerd.io/snapshot/remote/stargz.digest");
    // the layer holding BIG: its usage, read from its index, is what it unpacks to
    const second = chainTop({ ...plain, diffIds: plain.diffIds.slice(0, 2) });
    const usage = await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "usage", second]);
    const row = usage.split("\n").find((l) => l.startsWith(second));
    const m = /\s([\d.]+)\s*(B|KiB|MiB|GiB)\s+(\d+)\s*$/.exec(row ?? "");
    expect(m, usage).not.toBeNull();
    const bytes = Number(m?.[1]) * { B: 1, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3 }[m?.[2] as "B"];
    expect(bytes).toBeGreaterThanOrEqual(BIG.length * 0.99);
    expect(bytes).toBeLessThan(BIG.length + (1 << 20));
    expect(Number(m?.[3])).toBeGreaterThanOrEqual(8); // app, hello, gone, link, data, old1, big, random.bin
  });

  it("once a first-contact layer is completely cached, new containers get a native copy instead of FUSE", async () => {
    await waitFor("native copies of the plain image's layers", () =>
      (augur.proc.log().match(/layer unpacked natively/g) ?? []).length >= plain.layerDigests.length, 60_000);
    const mounts = JSON.parse(await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "prepare", "--mounts", "native-probe", chainTop(plain)])) as
      { Type: string; Options: string[] }[];
    expect(mounts[0]?.Type).toBe("overlay");
    const lowers = (mounts[0]?.Options.find((o) => o.startsWith("lowerdir=")) ?? "").slice("lowerdir=".length).split(":");
    expect(lowers).toHaveLength(3);
    expect(lowers.every((l) => l.endsWith("/native"))).toBe(true);
    await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "rm", "native-probe"]);
    // The copy is exact: whiteouts, opaque dirs, links and bytes as through FUSE.
    const out = await runProbe(containerd, refs.plain, "plain-native", `${PROBE}; md5sum /big/random.bin; stat -c '%s %a %u' /big/random.bin`);
    expect(out.stdout).toBe(`${PROBE_OUT}${md5(BIG)}  /big/random.bin\n${BIG.length} 644 0\n`);
  });

  it("zstd layers are served lazily too", async () => {
    const pulled = await rpull(containerd, refs.zstd);
    expect(pulled.code, pulled.stderr).toBe(0);
    const out = await runProbe(containerd, refs.zstd, "zstd-1", `${PROBE}; md5sum /big/random.bin`);
    expect(out.stdout).toBe(`${PROBE_OUT}${md5(BIG)}  /big/random.bin\n`);
  });

  it("GET /cache/status shows the cache and every lazily mounted layer", async () => {
    const r = await run("curl", ["-sf", "--unix-socket", augur.apiSocket, "http://augur/cache/status"]);
    expect(r.code).toBe(0);
    const status = JSON.parse(r.stdout) as {
      lazy: boolean; cache: { usedBytes: number; maxBytes: number; files: { blobs: number; indexes: number } };
      layers: { layer: string; format: string; ready: boolean }[];
    };
    expect(status.lazy).toBe(true);
    expect(status.cache.usedBytes).toBeGreaterThan(0);
    expect(status.cache.usedBytes).toBeLessThanOrEqual(status.cache.maxBytes);
    expect(status.cache.files.indexes).toBeGreaterThanOrEqual(6); // plain and zstd layers
    expect(status.layers.length).toBe(9); // 3 images x 3 layers
    for (const d of [...plain.layerDigests, ...zstd.layerDigests, ...estargzLayers.map((l) => l.digest)]) {
      expect(status.layers.find((l) => l.layer === d)?.ready).toBe(true);
    }
    expect(status.layers.filter((l) => l.format === "estargz")).toHaveLength(3);
  });

  it("a layer GNU tar refuses to unpack stays on FUSE, and the failure is kept beside it", async () => {
    // a member name with '..' in it: augur serves it inside the layer, GNU tar refuses it (exit 2)
    const image = await buildImage(join(dir, "dotdot"), {
      layers: [busyboxLayer(), [{ type: "dir", path: "app" }, { type: "file", path: "app/ok.txt", content: "ok\n" }, { type: "file", path: "app/../../escape.txt", content: "no\n" }]],
      cmd: ["/bin/sh"],
    });
    const ref = `${registry.host}/lazy/dotdot:1`;
    pushImage(image, ref);
    const pulled = await rpull(containerd, ref);
    expect(pulled.code, pulled.stderr).toBe(0);
    expect((await runProbe(containerd, ref, "dotdot-1", "cat /app/ok.txt")).stdout).toBe("ok\n");
    await waitFor("the native copy to fail", () => /native copy of layer failed/.test(augur.proc.log()), 60_000);
    expect(failedCopies()).toHaveLength(1);
  });

  it("a restarted augur mounts its lazy layers again and containers still run", async () => {
    await augur.stop("SIGKILL");
    augur = await startAugur(dir, { root: join(dir, "r"), logName: "augur-restarted.log" });
    await containerd.reachSnapshotter();
    const out = await runProbe(containerd, refs.plain, "plain-after-restart");
    expect(out.stdout).toBe(PROBE_OUT);
  });

  it("a layer that unpacks to over 50 times its blob gets no native copy; containers keep reading it through FUSE", async () => {
    const zeros = Buffer.alloc(100 << 20);
    const image = await buildImage(join(dir, "zeros"), { layers: [busyboxLayer(), [{ type: "file", path: "zeros.bin", content: zeros }]], cmd: ["/bin/sh"] });
    expect(image.layerSizes[1]).toBeLessThan(1 << 20);
    const ref = `${registry.host}/lazy/zeros:1`;
    pushImage(image, ref);
    const pulled = await rpull(containerd, ref);
    expect(pulled.code, pulled.stderr).toBe(0);
    const out = await runProbe(containerd, ref, "zeros-1", "md5sum /zeros.bin");
    expect(out.stdout).toBe(`${md5(zeros)}  /zeros.bin\n`);
    const digest = image.layerDigests[1] as string;
    await waitFor("the native copy to be refused", () => augur.proc.log().split("\n").some((l) => l.includes("layer not copied natively") && l.includes(digest)), 60_000);
    const line = augur.proc.log().split("\n").find((l) => l.includes("layer not copied natively") && l.includes(digest)) ?? "";
    expect(line).toContain(`unpacks to ${zeros.length} bytes from ${image.layerSizes[1]}, more than 50 times its blob`);
    // new containers still get the layer through FUSE, not a copy
    const mounts = JSON.parse(await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "prepare", "--mounts", "zeros-probe", chainTop(image)])) as { Options: string[] }[];
    const lowers = (mounts[0]?.Options.find((o) => o.startsWith("lowerdir=")) ?? "").slice("lowerdir=".length).split(":");
    expect(lowers[0]).toMatch(/\/fs$/);
    await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "rm", "zeros-probe"]);
    expect((await runProbe(containerd, ref, "zeros-2", "md5sum /zeros.bin")).stdout).toBe(`${md5(zeros)}  /zeros.bin\n`);
    // the restarted augur has gone through its copies (the refusal above came after them): it did not try the failed one again
    expect(augur.proc.log()).not.toMatch(/native copy of layer failed/);
    expect(failedCopies()).toHaveLength(1);
  });

  describe("a second node with the index but no data", () => {
    let dirB: string;
    let augurB: Augur;
    let containerdB: Containerd;

    beforeAll(async () => {
      dirB = scratchDir("as-lazyb-");
      const cacheA = join(dir, "r", "cache");
      const cacheB = join(dirB, "cache");
      cpSync(join(cacheA, "indexes"), join(cacheB, "indexes"), { recursive: true });
      expect(readdirSync(join(cacheB, "indexes", "sha256")).length).toBeGreaterThanOrEqual(3);
      // on-demand reads are under test here: no prefetch from this node's earlier containers' traces
      augurB = await startAugur(dirB, { root: join(dirB, "r"), extraArgs: ["--cache-dir", cacheB, "--no-prefetch"] });
      containerdB = await startContainerd(dirB, augurB.socket);
    }, 120_000);

    afterAll(async () => {
      await containerdB?.stop();
      await augurB?.stop();
      await removeScratch(dirB);
    }, 120_000);

    it("reads only the spans the container needs", async () => {
      const before = (await registry.settledLog()).length;
      const pulled = await rpull(containerdB, refs.plain);
      expect(pulled.code, pulled.stderr).toBe(0);
      const out = await runProbe(containerdB, refs.plain, "plain-b");
      expect(out.stdout).toBe(PROBE_OUT);
      expect(augurB.proc.log()).toMatch(/format=indexed/);
      const total = plain.layerSizes.reduce((a, b) => a + b, 0);
      const fetched = blobBytes((await registry.settledLog()).slice(before), plain.layerDigests);
      expect(fetched).toBeGreaterThan(0);
      expect(fetched).toBeLessThan(total * 0.5);
    });

    it("a tampered blob fails the read with EIO, names the layer, and never serves wrong bytes", async () => {
      const layer = plain.layerDigests[1] as string;
      const data = join(registry.storage, "docker/registry/v2/blobs/sha256", layer.slice(7, 9), layer.slice(7), "data");
      expect(existsSync(data)).toBe(true);
      const at = (plain.layerSizes[1] as number) - 4096; // inside the big file's last span
      const original = Buffer.alloc(16);
      const fd = openSync(data, "r+");
      try {
        readSync(fd, original, 0, 16, at);
        writeSync(fd, Buffer.from(original.map((b) => b ^ 0xff)), 0, 16, at);
        const bad = await runProbe(containerdB, refs.plain, "tampered", "md5sum /big/random.bin; cat /app/hello.txt");
        expect(bad.stdout).not.toContain(md5(BIG));
        expect(bad.stdout).toContain("hello from layer 2");
        expect(bad.stdout + bad.stderr).toMatch(/I\/O error|Input\/output error/);
        const named = new RegExp(`${layer}.*verification failed|verification failed.*${layer}`);
        await waitFor("augur to log the failed verification", () => named.test(augurB.proc.log()), 10_000).catch(() => undefined);
        expect(augurB.proc.log()).toMatch(named);
      } finally {
        writeSync(fd, original, 0, 16, at);
        closeSync(fd);
      }
    });

    it("a read while the registry is down fails within a bounded time and works once it is back", async () => {
      await containerdB.ctrOk(["run", "-d", "--snapshotter", "augur", refs.plain, "outage", "sleep", "600"], 120_000);
      const exec = (id: string, script: string) => containerdB.ctr(["tasks", "exec", "--exec-id", id, "outage", "sh", "-c", script], 180_000);
      expect((await exec("e1", "cat /app/hello.txt")).stdout).toBe("hello from layer 2\n");
      await registry.stop();
      try {
        const started = Date.now();
        const down = await exec("e2", "md5sum /big/random.bin");
        const took = Date.now() - started;
        expect(down.stdout).not.toContain(md5(BIG));
        expect(down.stdout + down.stderr).toMatch(/I\/O error|Input\/output error/);
        expect(took).toBeLessThan(90_000);
      } finally {
        await registry.restart();
      }
      const back = await exec("e3", "md5sum /big/random.bin");
      expect(back.stdout).toBe(`${md5(BIG)}  /big/random.bin\n`);
    }, 300_000);
  });
});

/** Chain ID of an image's top layer, as containerd names committed snapshots. */
/** Snapshots whose native copy failed, by the marker augur keeps beside them. */
function failedCopies(): string[] {
  const snapshots = join(augur.root, "s");
  return readdirSync(snapshots).filter((id) => existsSync(join(snapshots, id, "native.failed")));
}

function chainTop(image: BuiltImage): string {
  let chain = "";
  for (const diff of image.diffIds) chain = chain ? `sha256:${createHash("sha256").update(`${chain} ${diff}`).digest("hex")}` : diff;
  return chain;
}
