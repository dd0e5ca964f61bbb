import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { layerTar, type LayerEntry } from "../../../scripts/images/oci-image.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";
import { EStargzLayerIndex } from "../../../snapshotter/layer/estargz.js";
import { FOOTER_SIZE, parseFooter } from "../../../snapshotter/layer/estargz-toc.js";
import { LayerVerificationError } from "../../../snapshotter/fetch/verification.js";
import { buildTarIndex } from "../../../snapshotter/layer/tar-index.js";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import { chunks, countingSource, joinTars, noise, rawTar, sha256 } from "./helpers.js";

const MiB = 1 << 20;
const CHUNK = 1 * MiB;
const here = dirname(fileURLToPath(import.meta.url));
/** Per-conversion scratch directories, removed after the file's tests. */
const scratch: string[] = [];
afterAll(() => scratch.forEach((d) => rmSync(d, { recursive: true, force: true })));
const hasGo = (() => {
  try {
    execFileSync("go", ["version"], { stdio: "ignore" });
    return existsSync("/usr/share/gocode/src/github.com/containerd/stargz-snapshotter/estargz/build.go");
  } catch {
    return false;
  }
})();

/** Builds stargz-snapshotter's estargz writer once per source version. */
function estgzTool(): string {
  const src = readFileSync(join(here, "estargz-fixture", "main.go"));
  const dir = join(tmpdir(), `augur-estgz-${createHash("sha256").update(src).digest("hex").slice(0, 12)}`);
  const bin = join(dir, "estgz");
  if (existsSync(bin)) return bin;
  mkdirSync(join(dir, "src", "estgz"), { recursive: true });
  copyFileSync(join(here, "estargz-fixture", "main.go"), join(dir, "src", "estgz", "main.go"));
  execFileSync("go", ["build", "-o", bin, "."], {
    cwd: join(dir, "src", "estgz"),
    env: { ...process.env, GO111MODULE: "off", GOPATH: `${dir}:/usr/share/gocode`, GOFLAGS: "" },
    stdio: ["ignore", "ignore", "inherit"],
  });
  return bin;
}

function toEStargz(tarball: Buffer, prioritized: string[]): { blob: Buffer; tocDigest: string } {
  const dir = mkdtempSync(join(tmpdir(), "augur-estargz-"));
  scratch.push(dir);
  writeFileSync(join(dir, "layer.tar"), tarball);
  const tocDigest = execFileSync(estgzTool(), [join(dir, "layer.tar"), join(dir, "layer.stargz"), String(CHUNK), ...prioritized], { encoding: "utf8" }).trim();
  return { blob: readFileSync(join(dir, "layer.stargz")), tocDigest };
}

const files: Record<string, Buffer> = {
  "etc/hostname": Buffer.from("augur\n"),
  "usr/bin/big": noise(9 * MiB + 77, 11),
  "usr/lib/libx.so": noise(300 * 1024, 5),
  "app/main.py": Buffer.from("print('READY')\n"),
  "usr/share/empty": Buffer.alloc(0),
};
const entries: LayerEntry[] = [
  { type: "dir", path: "etc" },
  { type: "file", path: "etc/hostname", content: files["etc/hostname"] as Buffer },
  { type: "file", path: "usr/bin/big", content: files["usr/bin/big"] as Buffer, mode: 0o755 },
  { type: "file", path: "usr/lib/libx.so", content: files["usr/lib/libx.so"] as Buffer },
  { type: "file", path: "usr/share/empty", content: Buffer.alloc(0) },
  { type: "link", path: "usr/bin/big2", target: "usr/bin/big" },
  { type: "symlink", path: "usr/bin/sh", target: "big" },
  { type: "whiteout", path: "var/old" },
  { type: "opaque", path: "var/lib" },
  { type: "dir", path: "app", uid: 1000, gid: 1000 },
  { type: "file", path: "app/main.py", content: files["app/main.py"] as Buffer, uid: 1000, gid: 1000 },
];

async function tarball(): Promise<Buffer> {
  const mtime = new Date("2024-01-01T00:00:00Z");
  const extra = await rawTar([
    { header: { name: "dev/null", type: "character-device", devmajor: 1, devminor: 3, mode: 0o666, mtime } },
    { header: { name: "bin/ping", size: 4, mode: 0o755, mtime, pax: { "SCHILY.xattr.security.capability": "cap" } }, content: Buffer.from("ping") },
  ]);
  return joinTars(await layerTar(entries), extra);
}

describe.skipIf(!hasGo)("eStargz made by stargz-snapshotter's writer", () => {
  let blob: Buffer;
  let tocDigest: string;
  let plain: { blob: Buffer; tocDigest: string };
  beforeAll(async () => {
    const t = await tarball();
    ({ blob, tocDigest } = toEStargz(t, ["app/main.py", "etc/hostname"]));
    plain = toEStargz(t, []);
  }, 120_000);

  it("finds the TOC from the footer and checks its digest", async () => {
    expect(parseFooter(blob.subarray(blob.length - FOOTER_SIZE)).footerSize).toBe(51);
    const layer = await EStargzLayerIndex.open(countingSource(blob), { digest: sha256(blob), tocDigest });
    expect(layer.tocDigest).toBe(tocDigest);
    await expect(EStargzLayerIndex.open(countingSource(blob), { digest: sha256(blob), tocDigest: sha256(Buffer.from("x")) }))
      .rejects.toThrow(LayerVerificationError);
  });

  it("serves every file byte-exact, fetching only the chunks asked for", async () => {
    const src = countingSource(blob);
    const layer = await EStargzLayerIndex.open(src, { digest: sha256(blob), tocDigest });
    const afterToc = src.requested;
    expect(afterToc).toBeLessThan(64 * 1024);
    const big = files["usr/bin/big"] as Buffer;
    expect((await layer.readFile("usr/bin/big", 4 * MiB + 10, 4096)).equals(big.subarray(4 * MiB + 10, 4 * MiB + 4106))).toBe(true);
    expect(src.requested - afterToc).toBeLessThan(CHUNK); // one compressed chunk
    expect(layer.chunkFor("usr/bin/big", 4 * MiB + 10)).toEqual({ offset: 4 * MiB, length: CHUNK });
    for (const [path, content] of Object.entries(files)) {
      expect((await layer.readFile(path, 0, content.length + 1)).equals(content)).toBe(true);
    }
    expect((await layer.readFile("usr/bin/big2", 0, 100)).equals(big.subarray(0, 100))).toBe(true);
    expect(src.requested).toBeLessThan(blob.length);
  });

  it("a miss's request takes the small chunks beside it in its 64 KiB blocks, so the next small file costs no request", async () => {
    const src = countingSource(plain.blob);
    const speculative = new FetchScheduler();
    const layer = await EStargzLayerIndex.open(src, { digest: sha256(plain.blob), tocDigest: plain.tocDigest, queue: speculative });
    const calls = src.calls.length;
    expect((await layer.readFile("usr/lib/libx.so", 0, 10)).equals((files["usr/lib/libx.so"] as Buffer).subarray(0, 10))).toBe(true);
    await speculative.idle();
    // app/main.py follows libx.so in the blob (links between them have no data): it came along
    const before = src.calls.length;
    expect(before).toBeGreaterThan(calls);
    expect((await layer.readFile("app/main.py", 0, 100)).toString()).toBe("print('READY')\n");
    expect(src.calls.length).toBe(before);
    // nothing beyond the read's own 64 KiB blocks: never the 9 MiB file
    expect(src.requested).toBeLessThan(plain.blob.length / 4);
    for (const c of src.calls.slice(calls)) expect(c.length).toBeLessThan(1 * MiB);
  });

  it("without a speculative queue a read fetches only its own chunks", async () => {
    const src = countingSource(plain.blob);
    const layer = await EStargzLayerIndex.open(src, { digest: sha256(plain.blob), tocDigest: plain.tocDigest });
    const calls = src.calls.length;
    await layer.readFile("usr/lib/libx.so", 0, 10);
    await layer.readFile("app/main.py", 0, 100);
    expect(src.calls.length).toBe(calls + 2);
  });

  it("exposes entry attributes, whiteouts and opaque markers", async () => {
    const layer = await EStargzLayerIndex.open(countingSource(blob), { digest: sha256(blob), tocDigest });
    expect(layer.getAttr("usr/bin/big")).toMatchObject({ type: "file", mode: 0o755, size: big().length, nlink: 2, mtime: 1704067200 });
    expect(layer.getAttr("usr/bin/big2")).toMatchObject({ type: "hardlink", linkname: "usr/bin/big", size: big().length });
    expect(layer.getAttr("usr/bin/sh")).toMatchObject({ type: "symlink", linkname: "big" });
    expect(layer.getAttr("dev/null")).toMatchObject({ type: "char", devmajor: 1, devminor: 3 });
    expect(layer.getAttr("bin/ping")?.xattrs["security.capability"]?.toString()).toBe("cap");
    expect(layer.getAttr("app")).toMatchObject({ uid: 1000, gid: 1000 });
    expect(layer.lookup("var", ".wh.old")?.type).toBe("file");
    expect(layer.lookup("var/lib", ".wh..wh..opq")?.type).toBe("file");
    expect(layer.lookup("", ".prefetch.landmark")).toBeUndefined();
  });

  it("lists the prioritised files before the prefetch landmark", async () => {
    const layer = await EStargzLayerIndex.open(countingSource(blob), { digest: sha256(blob), tocDigest });
    expect(layer.prefetch.landmark).toBe("prefetch");
    expect(layer.prefetch.entries).toEqual(["app/main.py", "etc/hostname"]);
    expect(layer.prefetch.size).toBeGreaterThan(0);
    const none = await EStargzLayerIndex.open(countingSource(plain.blob), { digest: sha256(plain.blob), tocDigest: plain.tocDigest });
    expect(none.prefetch).toEqual({ landmark: "no-prefetch", entries: [], size: 0 });
  });

  it("throws on a corrupted chunk and never returns its bytes", async () => {
    const bad = Buffer.from(blob);
    const at = Math.floor(blob.length / 2); // inside the big file's chunks
    bad[at] = (bad[at] as number) ^ 0x55;
    const layer = await EStargzLayerIndex.open(countingSource(bad), { digest: sha256(blob), tocDigest });
    await expect(layer.readFile("usr/bin/big", 0, big().length)).rejects.toThrow(LayerVerificationError);
    await expect(layer.readFile("usr/bin/big", 0, big().length)).rejects.toThrow(sha256(blob));
    expect((await layer.readFile("etc/hostname", 0, 100)).toString()).toBe("augur\n");
  });

  it("reads a legacy 47-byte stargz footer", async () => {
    const { tocOffset } = parseFooter(blob.subarray(blob.length - FOOTER_SIZE));
    const legacy = Buffer.concat([
      Buffer.from([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 22, 0]),
      Buffer.from(tocOffset.toString(16).padStart(16, "0") + "STARGZ", "latin1"),
      Buffer.from([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
    ]);
    expect(legacy.length).toBe(47);
    const old = Buffer.concat([blob.subarray(0, blob.length - FOOTER_SIZE), legacy]);
    expect(parseFooter(old.subarray(old.length - 51))).toEqual({ tocOffset, footerSize: 47 });
    const layer = await EStargzLayerIndex.open(countingSource(old), { digest: sha256(old), tocDigest });
    expect((await layer.readFile("app/main.py", 0, 100)).toString()).toBe("print('READY')\n");
  });

  it("is also a valid tar+gzip layer for the seekable index (many gzip members)", async () => {
    const idx = await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", spanSize: MiB });
    const layer = new TarLayerIndex(idx, countingSource(blob));
    for (const [path, content] of Object.entries(files)) {
      expect((await layer.readFile(path, 0, content.length)).equals(content)).toBe(true);
    }
    expect(layer.getAttr("stargz.index.json")?.type).toBe("file");
  });
});

function big(): Buffer {
  return files["usr/bin/big"] as Buffer;
}
