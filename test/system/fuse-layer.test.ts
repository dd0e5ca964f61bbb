// Layers mounted with real FUSE, checked the way a user would check an
// unpacked layer: stat, ls, readlink, cat, dd, getfattr, find, and overlayfs
// over two FUSE lowers. The FUSE server runs in this process, so everything
// that touches a mount runs in a child process (a sync fs call here would
// deadlock); files outside the mounts are fine to touch directly.
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, ftruncateSync, mkdirSync, openSync, readFileSync, writeFileSync, writeSync } from "node:fs";
import { open, readFile, type FileHandle } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { layerTar, type LayerEntry as TarEntry } from "../../scripts/images/oci-image.js";
import { mountLayer, unmountStale, type MountedLayer, type MountLayerOptions } from "../../snapshotter/fuse/mount-layer.js";
import { isMountPoint } from "../../snapshotter/util/mountinfo.js";
import type { BlobSource } from "../../snapshotter/fetch/blob-source.js";
import { viewOf, type LayerView } from "../../snapshotter/layer/layer-view.js";
import { buildTarIndex } from "../../snapshotter/layer/tar-index.js";
import { TarLayerIndex } from "../../snapshotter/layer/tar-layer.js";
import { unmount } from "../harness/mounts.js";
import { removeScratch, run, runOk, scratchDir, startProcess, waitFor } from "../harness/processes.js";
import { chunks, joinTars, noise, rawTar, sha256 } from "../unit/layer/helpers.js";

const MiB = 1 << 20;
const GiB = 1024 * MiB;
const MEDIA = { gzip: "application/vnd.oci.image.layer.v1.tar+gzip", none: "application/vnd.oci.image.layer.v1.tar" } as const;
const MTIME = 1704067200; // layerTar's 2024-01-01T00:00:00Z
const hex = (b: Buffer): string => b.toString("hex");

let scratch: string;
let serial = 0;
const handles: FileHandle[] = [];
/** Mounts made by the current test: overlays first, then FUSE layers, all undone in afterEach. */
const overlays: string[] = [];
const layers: MountedLayer[] = [];

beforeAll(() => {
  scratch = scratchDir("augur-fuse-");
});
afterEach(async () => {
  for (const target of overlays.splice(0)) await unmount(target);
  for (const layer of layers.splice(0)) await layer.unmount();
});
afterAll(async () => {
  for (const fh of handles.splice(0)) await fh.close();
  if (scratch) await removeScratch(scratch);
});

/** A BlobSource reading the blob file at `path`: a layer blob in the local cache. */
async function fileSource(path: string): Promise<BlobSource> {
  const fh = await open(path, "r");
  handles.push(fh);
  const { size } = await fh.stat();
  return {
    size,
    read: async (offset, length) => {
      const buf = Buffer.alloc(Math.max(0, Math.min(length, size - offset)));
      const { bytesRead } = await fh.read(buf, 0, buf.length, offset);
      return buf.subarray(0, bytesRead);
    },
  };
}

interface BuiltLayer {
  view: LayerView;
  digest: string;
  blobPath: string;
}

/** Indexes `tarball` (compressed as asked), keeps the blob in a file, and views it through a file-backed source. */
async function buildLayer(tarball: Buffer, kind: keyof typeof MEDIA = "gzip"): Promise<BuiltLayer> {
  const blob = kind === "gzip" ? gzipSync(tarball, { level: 1 }) : tarball;
  const digest = sha256(blob);
  const index = await buildTarIndex(chunks(blob, 4 * MiB), { digest, mediaType: MEDIA[kind], spanSize: MiB });
  const blobPath = join(scratch, `blob-${++serial}`);
  writeFileSync(blobPath, blob);
  return { view: viewOf(new TarLayerIndex(index, await fileSource(blobPath))), digest, blobPath };
}

async function mount(view: LayerView, opts?: MountLayerOptions): Promise<string> {
  const dir = join(scratch, `mnt-${++serial}`);
  mkdirSync(dir);
  const layer = await mountLayer(dir, view, opts);
  layers.push(layer);
  return layer.dir;
}

const sh = (script: string): Promise<{ code: number; stdout: string; stderr: string }> => run("sh", ["-c", script]);
const shOk = (script: string): Promise<string> => runOk("sh", ["-c", script]);

/** `stat -c` in a child: name|type|perms|uid|gid|size|mtime|links|major|minor (hex). */
async function stats(dir: string, ...paths: string[]): Promise<Record<string, string>> {
  const out = await runOk("stat", ["-c", "%n|%F|%a|%u|%g|%s|%Y|%h|%t|%T", ...paths.map((p) => join(dir, p))]);
  const lines = out.trim().split("\n").map((l) => l.split("|"));
  return Object.fromEntries(lines.map(([name, ...rest]) => [(name ?? "").slice(dir.length + 1), rest.join("|")]));
}

describe("a layer mounted with FUSE", () => {
  const tool = noise(100_000, 5);
  const entries: TarEntry[] = [
    { type: "dir", path: "etc" },
    { type: "file", path: "etc/hostname", content: "augur\n" },
    { type: "dir", path: "srv", mode: 0o1777, uid: 1000, gid: 1001 },
    { type: "file", path: "usr/bin/tool", content: tool, mode: 0o4755 },
    { type: "file", path: "home/u/data", content: "private\n", mode: 0o640, uid: 1234, gid: 5678 },
    { type: "file", path: "empty", content: "" },
    { type: "symlink", path: "usr/bin/alias", target: "tool" },
    { type: "symlink", path: "etc/abs", target: "/etc/hostname" },
    { type: "link", path: "usr/bin/tool-again", target: "usr/bin/tool" },
  ];
  const extras = (): Promise<Buffer> => {
    const mtime = new Date(MTIME * 1000);
    return rawTar([
      { header: { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666, mtime } },
      { header: { name: "dev/sda", type: "block-device", devmajor: 8, devminor: 0, mode: 0o660, mtime } },
      { header: { name: "dev/nvme", type: "block-device", devmajor: 259, devminor: 300, mode: 0o600, mtime } },
      { header: { name: "run/fifo", type: "fifo", mode: 0o600, mtime } },
      {
        header: { name: "bin/ping", size: 4, mode: 0o755, mtime, pax: { "SCHILY.xattr.user.note": "héllo", "SCHILY.xattr.trusted.tag": "t1" } },
        content: Buffer.from("ping"),
      },
    ]);
  };
  let layer: BuiltLayer;
  beforeAll(async () => {
    layer = await buildLayer(joinTars(await layerTar(entries), await extras()));
  });

  it("shows modes, owners, sizes, mtimes and types exactly as stored", async () => {
    const dir = await mount(layer.view);
    const s = await stats(dir, "etc", "etc/hostname", "srv", "usr/bin/tool", "home/u/data", "empty", "dev/null", "dev/sda", "dev/nvme", "run/fifo");
    expect(s).toEqual({
      etc: `directory|755|0|0|4096|${MTIME}|2|0|0`,
      "etc/hostname": `regular file|644|0|0|6|${MTIME}|1|0|0`,
      srv: `directory|1777|1000|1001|4096|${MTIME}|2|0|0`,
      "usr/bin/tool": `regular file|4755|0|0|100000|${MTIME}|2|0|0`,
      "home/u/data": `regular file|640|1234|5678|8|${MTIME}|1|0|0`,
      empty: `regular empty file|644|0|0|0|${MTIME}|1|0|0`,
      "dev/null": `character special file|666|0|0|0|${MTIME}|1|1|3`,
      "dev/sda": `block special file|660|0|0|0|${MTIME}|1|8|0`,
      "dev/nvme": `block special file|600|0|0|0|${MTIME}|1|103|12c`,
      "run/fifo": `fifo|600|0|0|0|${MTIME}|1|0|0`,
    });
    // atime and ctime are the mtime too
    expect((await runOk("stat", ["-c", "%X %Z", join(dir, "etc/hostname")])).trim()).toBe(`${MTIME} ${MTIME}`);
  });

  it("serves file bytes, symlinks and hardlinks", async () => {
    const dir = await mount(layer.view);
    expect(await shOk(`cat ${dir}/etc/hostname`)).toBe("augur\n");
    const want = createHash("sha256").update(tool).digest("hex");
    expect((await shOk(`sha256sum ${dir}/usr/bin/tool ${dir}/usr/bin/tool-again ${dir}/usr/bin/alias`)).split("\n").filter(Boolean).map((l) => l.split(" ")[0])).toEqual([want, want, want]);
    expect(await shOk(`readlink ${dir}/usr/bin/alias ${dir}/etc/abs`)).toBe("tool\n/etc/hostname\n");
    expect((await stats(dir, "usr/bin/alias"))["usr/bin/alias"]).toBe(`symbolic link|777|0|0|4|${MTIME}|1|0|0`);
    const inodes = (await shOk(`stat -c '%i %h' ${dir}/usr/bin/tool ${dir}/usr/bin/tool-again`)).trim().split("\n");
    expect(inodes[0]).toBe(inodes[1]);
    expect(inodes[0]?.endsWith(" 2")).toBe(true);
    expect(await shOk(`cat ${dir}/empty`)).toBe("");
  });

  it("lists directories with . and .., and find walks the whole layer", async () => {
    const dir = await mount(layer.view);
    const ls = await shOk(`ls -la ${dir}/usr/bin`);
    expect(ls).toMatch(/^-rwsr-xr-x 2 root root 100000 Jan {2}1 {2}2024 tool$/m);
    expect(ls).toMatch(/^lrwxrwxrwx 1 root root +4 Jan {2}1 {2}2024 alias -> tool$/m);
    expect(ls).toMatch(/ \.$/m);
    expect(ls).toMatch(/ \.\.$/m);
    const found = (await shOk(`cd ${dir} && find . -mindepth 1 | sort`)).trim().split("\n");
    expect(found).toEqual([
      "./bin", "./bin/ping", "./dev", "./dev/null", "./dev/nvme", "./dev/sda", "./empty", "./etc", "./etc/abs", "./etc/hostname",
      "./home", "./home/u", "./home/u/data", "./run", "./run/fifo", "./srv", "./usr", "./usr/bin", "./usr/bin/alias",
      "./usr/bin/tool", "./usr/bin/tool-again",
    ]);
    // find -type uses readdir's d_type; it must agree with stat
    expect((await shOk(`cd ${dir} && find . -type c -o -type b -o -type p | sort`)).trim().split("\n")).toEqual(["./dev/null", "./dev/nvme", "./dev/sda", "./run/fifo"]);
  });

  it("serves stored xattrs", async () => {
    const dir = await mount(layer.view);
    expect(await shOk(`getfattr --absolute-names --only-values -n user.note ${dir}/bin/ping`)).toBe("héllo");
    const dump = await shOk(`getfattr --absolute-names -e hex -d -m - ${dir}/bin/ping`);
    expect(dump).toContain(`trusted.tag=0x${hex(Buffer.from("t1"))}`);
    expect(dump).toContain(`user.note=0x${hex(Buffer.from("héllo"))}`);
    const none = await sh(`getfattr --absolute-names -n user.none ${dir}/bin/ping`);
    expect(none.stderr).toContain("No such attribute");
  });

  it("answers ENOENT for unknown names, and the kernel keeps that answer (a layer's names never change once it answers)", async () => {
    const hidden = new Set(["etc/hostname"]);
    const base = layer.view;
    const view: LayerView = {
      digest: base.digest,
      getAttr: async (p) => (hidden.has(p) ? undefined : base.getAttr(p)),
      lookup: async (d, n) => (hidden.has(d === "" ? n : `${d}/${n}`) ? undefined : base.lookup(d, n)),
      readdir: async (p) => (await base.readdir(p)).filter((e) => !hidden.has(e.path)),
      readFile: (p, o, l) => base.readFile(p, o, l),
      hasXattrs: () => base.hasXattrs(),
    };
    const dir = await mount(view);
    expect((await sh(`cat ${dir}/nope`)).stderr).toContain("No such file or directory");
    expect((await sh(`stat ${dir}/etc/hostname`)).stderr).toContain("No such file or directory");
    hidden.clear(); // were the layer to change, the kernel would not ask again
    expect((await sh(`cat ${dir}/etc/hostname`)).stderr).toContain("No such file or directory");
  });

  it("a layer without extended attributes tells the kernel once, which then stops asking", async () => {
    const plain = await buildLayer(await layerTar([{ type: "file", path: "a.txt", content: "a\n" }, { type: "dir", path: "d" }]));
    const dir = await mount(plain.view);
    for (let i = 0; i < 2; i++) {
      const r = await sh(`getfattr --absolute-names -n trusted.overlay.opaque ${dir}/d`);
      expect(r.stderr).toContain("Operation not supported");
    }
    expect(await shOk(`cat ${dir}/a.txt`)).toBe("a\n");
  });

  it("refuses every write with EROFS", async () => {
    const dir = await mount(layer.view);
    for (const cmd of [
      `touch ${dir}/new`,
      `echo x > ${dir}/etc/hostname`,
      `echo x >> ${dir}/etc/hostname`,
      `mkdir ${dir}/d`,
      `rm ${dir}/etc/hostname`,
      `chmod 600 ${dir}/etc/hostname`,
      `chown 1:1 ${dir}/etc/hostname`,
      `mv ${dir}/etc/hostname ${dir}/etc/h2`,
      `ln -s x ${dir}/etc/l`,
      `setfattr -n user.x -v 1 ${dir}/etc/hostname`,
    ]) {
      const r = await sh(cmd);
      expect(r.code, cmd).not.toBe(0);
      expect(r.stderr, cmd).toContain("Read-only file system");
    }
    expect(await shOk(`cat ${dir}/etc/hostname`)).toBe("augur\n");
  });
});

describe("whiteouts and opaque directories", () => {
  it("shows whiteouts as 0/0 character devices and opaque directories by xattr", async () => {
    const { view } = await buildLayer(await layerTar([
      { type: "dir", path: "a" },
      { type: "whiteout", path: "a/gone" },
      { type: "opaque", path: "d" },
      { type: "file", path: "d/z", content: "z\n" },
    ]));
    const dir = await mount(view);
    expect((await stats(dir, "a/gone"))["a/gone"]).toBe(`character special file|0|0|0|0|${MTIME}|1|0|0`);
    expect(await shOk(`ls -A ${dir}/a ${dir}/d`)).toBe(`${dir}/a:\ngone\n\n${dir}/d:\nz\n`);
    expect((await sh(`stat ${dir}/a/.wh.gone ${dir}/d/.wh..wh..opq`)).stderr.match(/No such file or directory/g)).toHaveLength(2);
    expect(await shOk(`getfattr --absolute-names --only-values -n trusted.overlay.opaque ${dir}/d`)).toBe("y");
    expect(await shOk(`getfattr --absolute-names -d -m - ${dir}/d`)).toContain('trusted.overlay.opaque="y"');
    expect((await sh(`getfattr --absolute-names -n trusted.overlay.opaque ${dir}/a`)).stderr).toContain("No such attribute");
  });

  it("overlayfs over two FUSE lowers: deleted files are gone, opaque directories hide lower contents", async () => {
    const lower = await buildLayer(await layerTar([
      { type: "file", path: "a/keep", content: "keep\n" },
      { type: "file", path: "a/gone", content: "gone\n" },
      { type: "file", path: "d/x", content: "x\n" },
      { type: "file", path: "d/sub/w", content: "w\n" },
    ]));
    const upper = await buildLayer(await layerTar([
      { type: "whiteout", path: "a/gone" },
      { type: "opaque", path: "d" },
      { type: "file", path: "d/z", content: "z\n" },
      { type: "file", path: "b", content: "b\n" },
    ]));
    const lowerDir = await mount(lower.view);
    const upperDir = await mount(upper.view);
    const merged = join(scratch, `merged-${++serial}`);
    mkdirSync(merged);
    await runOk("mount", ["-t", "overlay", "overlay", merged, "-o", `lowerdir=${upperDir}:${lowerDir}`]);
    overlays.push(merged);
    expect((await shOk(`cd ${merged} && find . -mindepth 1 | sort`)).trim().split("\n")).toEqual(["./a", "./a/keep", "./b", "./d", "./d/z"]);
    expect(await shOk(`cat ${merged}/a/keep ${merged}/d/z ${merged}/b`)).toBe("keep\nz\nb\n");
    expect((await sh(`cat ${merged}/a/gone`)).stderr).toContain("No such file or directory");
    expect((await sh(`cat ${merged}/d/x`)).stderr).toContain("No such file or directory");
  });
});

describe("large and sparse files", () => {
  it("reads a sparse 5 GiB file at offsets beyond 2^32", async () => {
    const src = join(scratch, `sparse-${++serial}`);
    mkdirSync(src);
    const size = 5 * GiB + 777;
    const islands = [0, 3 * MiB + 5, 4 * GiB - 100, 4 * GiB + 12345, size - 200];
    const fd = openSync(join(src, "huge.bin"), "w");
    ftruncateSync(fd, size);
    const data = islands.map((at, i) => {
      const d = noise(200, i + 11);
      writeSync(fd, d, 0, d.length, at);
      return d;
    });
    closeSync(fd);
    await runOk("tar", ["-C", src, "--sparse", "--format=posix", "--sparse-version=1.0", "-cf", join(src, "l.tar"), "huge.bin"]);
    const { view } = await buildLayer(readFileSync(join(src, "l.tar")));
    const dir = await mount(view);
    expect((await stats(dir, "huge.bin"))["huge.bin"]).toMatch(new RegExp(`^regular file\\|644\\|0\\|0\\|${size}\\|`));
    const at = async (offset: number, length: number): Promise<string> =>
      (await shOk(`dd if=${dir}/huge.bin iflag=skip_bytes,count_bytes skip=${offset} count=${length} status=none | od -An -v -tx1 | tr -d ' \\n'`));
    for (const [i, offset] of islands.entries()) {
      expect(await at(offset, 200), `island at ${offset}`).toBe(hex(data[i] as Buffer));
    }
    expect(await at(4 * GiB + 100_000, 64)).toBe("00".repeat(64)); // a hole past 4 GiB reads as zeros
    expect(await at(size - 100, 1000)).toBe(hex((data[4] as Buffer).subarray(100))); // clipped at the end
  });
});

describe("failures", () => {
  it("a tampered blob fails the read with EIO, logs the layer and path, and returns nothing wrong", async () => {
    const big = noise(6 * MiB, 9);
    const layer = await buildLayer(await layerTar([
      { type: "file", path: "ok.txt", content: "fine\n" },
      { type: "file", path: "big.bin", content: big },
    ]));
    // the blob changes after it was indexed, as a bad cache or mirror would change it
    const blob = readFileSync(layer.blobPath);
    const at = Math.floor(blob.length * 0.6);
    blob[at] = (blob[at] as number) ^ 0xff;
    writeFileSync(layer.blobPath, blob);

    const logged: string[] = [];
    const spy = vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      logged.push(String(chunk));
      return true;
    });
    try {
      const dir = await mount(layer.view);
      expect(await shOk(`cat ${dir}/ok.txt`)).toBe("fine\n");
      const out = join(scratch, `out-${++serial}`);
      const r = await sh(`dd if=${dir}/big.bin of=${out} bs=64k status=none`);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toContain("Input/output error");
      const got = readFileSync(out);
      expect(got.length).toBeLessThan(big.length);
      expect(got.equals(big.subarray(0, got.length))).toBe(true);
    } finally {
      spy.mockRestore();
    }
    const lines = logged.filter((l) => l.includes(" fuse: ") && l.includes("verification"));
    expect(lines.length).toBeGreaterThan(0);
    expect(lines[0]).toContain(layer.digest);
    expect(lines[0]).toContain("path=big.bin");
  });
  it("a read still waiting on the layer after opTimeoutMs fails with ETIMEDOUT", async () => {
    const { view: base } = await buildLayer(await layerTar([{ type: "file", path: "f", content: "f\n" }]));
    const stuck: LayerView = { ...base, readFile: () => new Promise<Buffer>(() => undefined) };
    const dir = await mount(stuck, { opTimeoutMs: 500 });
    const r = await sh(`cat ${dir}/f`);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain("Connection timed out");
  });
});

describe("mount lifecycle", () => {
  it("unmount is idempotent and detaches lazily while a process still uses the mount", async () => {
    const { view } = await buildLayer(await layerTar([{ type: "file", path: "f", content: "f\n" }]));
    const dir = join(scratch, `busy-${++serial}`);
    mkdirSync(dir);
    const layer = await mountLayer(dir, view);
    layers.push(layer);
    // the shell changes into the mount after exec: spawn's own `cwd` would chdir
    // before exec, while this process (the FUSE server) waits for it: a deadlock
    const user = spawn("sh", ["-c", `cd ${dir} && exec sleep 60`], { stdio: "ignore" });
    await waitFor("sleep inside the mount", async () => (await readFile(`/proc/${user.pid}/cmdline`, "utf8").catch(() => "")).startsWith("sleep"));
    try {
      await layer.unmount();
      expect(isMountPoint(layer.dir)).toBe(false);
      expect(user.exitCode).toBe(null);
      await layer.unmount();
    } finally {
      user.kill("SIGKILL");
    }
  });

  it("detaches a dead mount left by a crashed process, and mounts over it", async () => {
    const dir = join(scratch, `dead-${++serial}`);
    mkdirSync(dir);
    const script = "const Fuse = require('fuse-native'); new Fuse(process.argv[1], {}).mount((e) => { if (e) throw e; console.log('mounted'); }); setInterval(() => {}, 1000);";
    const crashed = startProcess("node", ["-e", script, dir], join(scratch, `dead-${serial}.log`));
    try {
      await waitFor("fuse-native child mount", () => crashed.log().includes("mounted"), 20_000, crashed);
      await crashed.stop("SIGKILL");
      expect((await sh(`stat ${dir}`)).stderr).toContain("Transport endpoint is not connected");
      expect(await unmountStale(dir)).toBe(true);
      expect(isMountPoint(dir)).toBe(false);
      expect(await unmountStale(dir)).toBe(false);
      const { view } = await buildLayer(await layerTar([{ type: "file", path: "f", content: "f\n" }]));
      layers.push(await mountLayer(dir, view));
      expect(await shOk(`cat ${dir}/f`)).toBe("f\n");
    } finally {
      await crashed.stop("SIGKILL");
      await unmountStale(dir);
    }
  });
});

describe("threads and speed", () => {
  it("serves reads concurrently (fuse_loop_mt: one libfuse thread per request in flight)", async () => {
    const files = Array.from({ length: 6 }, (_, i): TarEntry => ({ type: "file", path: `f${i}`, content: `file ${i}\n` }));
    const { view: base } = await buildLayer(await layerTar(files));
    const DELAY = 400;
    const slow: LayerView = { ...base, readFile: async (p, o, l) => {
      await new Promise((r) => setTimeout(r, DELAY));
      return base.readFile(p, o, l);
    } };
    const dir = await mount(slow);
    await shOk(`stat ${files.map((f) => `${dir}/${f.path}`).join(" ")} >/dev/null`);
    const started = Date.now();
    const out = await shOk(`for f in ${files.map((f) => f.path).join(" ")}; do cat ${dir}/$f > ${scratch}/$f.out & done; wait; cat ${files.map((f) => `${scratch}/${f.path}.out`).join(" ")}`);
    const ms = Date.now() - started;
    expect(out).toBe(files.map((_, i) => `file ${i}\n`).join(""));
    console.log(`6 concurrent reads, each waiting ${DELAY} ms on the layer: ${ms} ms`);
    expect(ms).toBeLessThan(DELAY * 3);
  });

  it("measures small-file access and a 256 MiB sequential read", async () => {
    const small = Array.from({ length: 300 }, (_, i): TarEntry => ({ type: "file", path: `s/f${i}`, content: noise(2000, i + 1) }));
    const bigSize = 256 * MiB;
    const unit = randomBytes(MiB);
    const bigData = Buffer.concat(Array.from({ length: 256 }, () => unit));
    const tarball = await layerTar([...small, { type: "file", path: "big.bin", content: bigData }]);
    const { view } = await buildLayer(tarball, "none");
    const dir = await mount(view);
    const onDisk = join(scratch, `ext-${++serial}`);
    mkdirSync(onDisk);
    writeFileSync(join(onDisk, "l.tar"), tarball);
    await runOk("tar", ["-C", onDisk, "-xf", join(onDisk, "l.tar"), "s"]);

    // stat+open+read+close of every small file, timed in a child process
    const probe = (root: string): Promise<string> => runOk("node", ["-e", `
      const fs = require("fs"); const root = process.argv[1]; const buf = Buffer.alloc(4096);
      const pass = () => { const t = process.hrtime.bigint();
        for (let i = 0; i < ${small.length}; i++) { const p = root + "/s/f" + i; fs.statSync(p); const fd = fs.openSync(p, "r"); fs.readSync(fd, buf, 0, 4096, 0); fs.closeSync(fd); }
        return Number(process.hrtime.bigint() - t) / 1000 / ${small.length}; };
      const cold = pass(); const warm = pass(); console.log(cold.toFixed(1) + " " + warm.toFixed(1));`, root]);
    const [fuseCold, fuseWarm] = (await probe(dir)).trim().split(" ");
    const [, diskWarm] = (await probe(onDisk)).trim().split(" ");

    const seq = async (): Promise<number> => {
      const started = process.hrtime.bigint();
      await shOk(`dd if=${dir}/big.bin of=/dev/null bs=1M status=none`);
      return bigSize / MiB / (Number(process.hrtime.bigint() - started) / 1e9);
    };
    const cold = await seq();
    const warm = await seq();
    const sum = await shOk(`sha256sum ${dir}/big.bin`);
    expect(sum.split(" ")[0]).toBe(createHash("sha256").update(bigData).digest("hex"));
    console.log(`small file stat+open+read+close: FUSE cold ${fuseCold} us, FUSE warm ${fuseWarm} us, ext4 ${diskWarm} us`);
    console.log(`256 MiB sequential read (dd bs=1M to /dev/null): cold ${cold.toFixed(0)} MiB/s, page-cached ${warm.toFixed(0)} MiB/s`);
    expect(cold).toBeGreaterThan(20);
  });
});
