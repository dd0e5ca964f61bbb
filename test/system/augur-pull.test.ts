// `augur pull` against a real containerd and registry: the fallback (augur
// answers Prepare with mounts; containerd's diff service applies each layer),
// the lazy path (augur takes each layer over and answers ALREADY_EXISTS), and
// bad input.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AUGUR_BIN, startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, runOk, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";
import { chainIds } from "../../snapshotter/pull/chain-id.js";

let dir: string;
let registry: Registry;
let image: BuiltImage;
let ref: string;
let chain: string[];

beforeAll(async () => {
  dir = scratchDir("augur-pull-");
  registry = await startRegistry(dir);
  image = await buildImage(join(dir, "image"), {
    layers: [
      busyboxLayer(),
      [
        { type: "dir", path: "app" },
        { type: "file", path: "app/hello.txt", content: "hello from layer 2\n" },
        { type: "file", path: "app/gone.txt", content: "deleted by layer 3\n" },
      ],
      [
        { type: "whiteout", path: "app/gone.txt" },
        { type: "file", path: "app/third.txt", content: "from layer 3\n" },
      ],
    ],
    cmd: ["/bin/cat", "/app/hello.txt"],
  });
  ref = `${registry.host}/augur/pull:latest`;
  pushImage(image, ref);
  chain = chainIds(image.diffIds);
});

afterAll(async () => {
  await registry?.stop();
  if (dir) await removeScratch(dir);
});

/** Runs `augur pull ARGS` from the built CLI (stdout is a pipe, so no live display). */
const augurPull = (...args: string[]) => run(process.execPath, [AUGUR_BIN, "pull", ...args], { timeoutMs: 120_000 });

const summary = (lazy: number, unpacked: number, present = 0) =>
  new RegExp(`^${ref.replace(/[.]/g, "\\.")}: 3 layers, ${lazy} lazy, ${unpacked} unpacked${present ? `, ${present} present` : ""}, in \\d+\\.\\d s\\n$`);

/** Reads a file from every layer: busybox (layer 1), layer 2's file, layer 3's file and its whiteout. */
const READ_EVERY_LAYER = "busybox | head -1; cat /app/hello.txt /app/third.txt; test -e /app/gone.txt && echo STILL-THERE; true";

function expectEveryLayer(out: string): void {
  expect(out).toMatch(/BusyBox v/);
  expect(out).toContain("hello from layer 2\nfrom layer 3\n");
  expect(out).not.toContain("STILL-THERE");
}

/** Committed snapshots from `ctr snapshots ls`, key -> parent. */
async function committed(containerd: Containerd): Promise<Map<string, string>> {
  const out = await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "ls"]);
  const rows = out.trim().split("\n").slice(1).map((l) => l.trim().split(/\s+/));
  return new Map(rows.filter((c) => c[c.length - 1] === "Committed").map((c) => [c[0] ?? "", c.length === 3 ? (c[1] ?? "") : ""]));
}

/** `ctr content ls` rows: digest -> labels column. */
async function content(containerd: Containerd): Promise<Map<string, string>> {
  const out = await containerd.ctrOk(["content", "ls"]);
  return new Map(out.trim().split("\n").slice(1).map((l) => {
    const cols = l.trim().split(/\s+/);
    return [cols[0] ?? "", cols.slice(1).join(" ")];
  }));
}

describe("augur pull when augur cannot serve layers lazily (augur serve --no-lazy)", () => {
  let augur: Augur;
  let containerd: Containerd;

  beforeAll(async () => {
    augur = await startAugur(dir, { root: join(dir, "r-fallback"), socket: join(dir, "fallback.sock"), extraArgs: ["--no-lazy"], logName: "augur-fallback.log" });
    containerd = await startContainerd(dir, augur.socket);
  });

  afterAll(async () => {
    await containerd?.stop();
    await augur?.stop();
  });

  it("pulls a 3-layer image through containerd's diff service and prints one summary line", async () => {
    const r = await augurPull("--plain-http", "--address", containerd.address, ref);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(summary(0, 3));
  });

  it("ctr run sees files from every layer", async () => {
    const out = await containerd.ctrOk(["run", "--rm", "--snapshotter", "augur", ref, "pull-fallback", "sh", "-c", READ_EVERY_LAYER]);
    expectEveryLayer(out);
  });

  it("ctr images ls shows the image, ctr snapshots ls the chain of chain IDs", async () => {
    const images = await containerd.ctrOk(["images", "ls"]);
    const row = images.split("\n").find((l) => l.startsWith(ref + " "));
    expect(row, images).toBeDefined();
    expect(row).toContain(image.manifestDigest);
    const snapshots = await committed(containerd);
    expect(snapshots.get(chain[0] ?? "")).toBe("");
    expect(snapshots.get(chain[1] ?? "")).toBe(chain[0]);
    expect(snapshots.get(chain[2] ?? "")).toBe(chain[1]);
  });

  it("leaves containerd's content store labelled as its own client does, and no lease behind", async () => {
    const blobs = await content(containerd);
    const manifest = blobs.get(image.manifestDigest) ?? "";
    expect(manifest).toContain("containerd.io/gc.ref.content.config=sha256:");
    for (const [i, digest] of image.layerDigests.entries()) {
      expect(manifest).toContain(`containerd.io/gc.ref.content.l.${i}=${digest}`);
      expect(blobs.get(digest)).toContain(`containerd.io/uncompressed=${image.diffIds[i]}`);
    }
    const configDigest = /containerd\.io\/gc\.ref\.content\.config=(sha256:[0-9a-f]{64})/.exec(manifest)?.[1] ?? "";
    expect(blobs.get(configDigest)).toContain(`containerd.io/gc.ref.snapshot.augur=${chain[2]}`);
    expect(manifest).toContain(`containerd.io/distribution.source.${registry.host}=augur/pull`);
    expect((await containerd.ctrOk(["leases", "ls", "-q"])).trim()).toBe("");
  });

  it("pulling again finds every layer present; -q prints nothing", async () => {
    const again = await augurPull("--plain-http", "--address", containerd.address, ref);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(summary(0, 0, 3));
    const quiet = await augurPull("-q", "--plain-http", "--address", containerd.address, ref);
    expect(quiet).toEqual({ code: 0, stdout: "", stderr: "" });
  });

  it("--plain-http makes every registry host plain HTTP, also one hosts.toml sends to https", async () => {
    const hostsDir = join(dir, "certs.d");
    mkdirSync(join(hostsDir, "registry.invalid"), { recursive: true });
    writeFileSync(join(hostsDir, "registry.invalid", "hosts.toml"), `server = "${registry.host}"\n`);
    const aliased = "registry.invalid/augur/pull:latest";
    const tls = await augurPull("--hosts-dir", hostsDir, "--address", containerd.address, aliased);
    expect(tls.code).toBe(1);
    expect(tls.stderr).toContain(`pull ${aliased}: manifest augur/pull:latest at ${registry.host}`);
    const plain = await augurPull("--plain-http", "--hosts-dir", hostsDir, "--address", containerd.address, aliased);
    expect(plain.stderr).toBe("");
    expect(plain.stdout).toBe(`${aliased}: 3 layers, 0 lazy, 0 unpacked, 3 present, in ${/in (\d+\.\d) s/.exec(plain.stdout)?.[1]} s\n`);
    expect(await containerd.ctrOk(["images", "ls", "-q"])).toContain(aliased);
  });

  it("an image index: stores index, manifest and config, and the image points at the index", async () => {
    // Wrap the image's manifest in an OCI index and push both.
    const manifestBytes = readFileSync(join(image.dir, "blobs", "sha256", image.manifestDigest.slice(7)));
    const indexBytes = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: image.manifestDigest, size: manifestBytes.length, platform: { os: "linux", architecture: "amd64" } }],
    }));
    const indexDigest = `sha256:${createHash("sha256").update(indexBytes).digest("hex")}`;
    writeFileSync(join(image.dir, "blobs", "sha256", indexDigest.slice(7)), indexBytes);
    writeFileSync(join(image.dir, "index.json"), JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: "application/vnd.oci.image.index.v1+json", digest: indexDigest, size: indexBytes.length, annotations: { "org.opencontainers.image.ref.name": "multi" } }],
    }));
    const multi = `${registry.host}/augur/pull:multi`;
    await runOk("skopeo", ["copy", "--quiet", "--all", "--dest-tls-verify=false", "--preserve-digests", `oci:${image.dir}:multi`, `docker://${multi}`]);
    const r = await augurPull("--platform", "linux/amd64", "--address", containerd.address, multi);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const row = (await containerd.ctrOk(["images", "ls"])).split("\n").find((l) => l.startsWith(multi + " ")) ?? "";
    expect(row).toContain("application/vnd.oci.image.index.v1+json");
    expect(row).toContain(indexDigest);
    expect((await content(containerd)).get(indexDigest)).toContain(`containerd.io/gc.ref.content.m.0=${image.manifestDigest}`);
    const out = await containerd.ctrOk(["run", "--rm", "--snapshotter", "augur", multi, "pull-index", "cat", "/app/third.txt"]);
    expect(out).toBe("from layer 3\n");
    const arm = await augurPull("--platform", "linux/arm64", "--address", containerd.address, multi);
    expect(arm.code).toBe(1);
    expect(arm.stderr).toContain("no manifest for platform linux/arm64 (index offers linux/amd64)");
  });

  describe("bad input", () => {
    it("an unknown image: exit 1, one line naming it", async () => {
      const missing = `${registry.host}/augur/no-such-image:latest`;
      const r = await augurPull("--plain-http", "--address", containerd.address, missing);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe("");
      expect(r.stderr).toContain(`pull ${missing}: `);
      expect(r.stderr).toMatch(/not found/);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect((await containerd.ctrOk(["leases", "ls", "-q"])).trim()).toBe("");
    });

    it("no containerd at --address: exit 1, says so", async () => {
      const socket = join(dir, "no-containerd.sock");
      const r = await augurPull("--plain-http", "--address", socket, ref);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`augur: pull ${ref}: containerd socket ${socket} does not exist: is containerd running? (--address)`);
    });

    it("a socket that is not containerd's: exit 1, says so", async () => {
      const r = await augurPull("--plain-http", "--address", augur.socket, ref);
      expect(r.code).toBe(1);
      expect(r.stderr.trim()).toBe(`augur: pull ${ref}: ${augur.socket} does not serve containerd's API: is it containerd's socket? (--address)`);
    });

    it("an unknown snapshotter: exit 1, containerd's reason", async () => {
      const r = await augurPull("--plain-http", "--snapshotter", "no-such-snapshotter", "--address", containerd.address, ref);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no-such-snapshotter/);
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    });

    it("a malformed reference or missing IMAGE: exit 1 before touching containerd", async () => {
      const bad = await augurPull("--address", containerd.address, `${registry.host}/Upper`);
      expect(bad.code).toBe(1);
      expect(bad.stderr).toContain(`invalid image reference "${registry.host}/Upper": repository name must be lowercase`);
      const none = await augurPull("--address", containerd.address);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/exactly one IMAGE/);
    });
  });
});

describe("augur pull with lazy pulling (augur serve)", () => {
  let augur: Augur;
  let containerd: Containerd;

  beforeAll(async () => {
    const lazyDir = join(dir, "lazy");
    mkdirSync(lazyDir);
    augur = await startAugur(lazyDir, { root: join(dir, "r-lazy"), socket: join(dir, "lazy.sock"), logName: "augur-lazy.log" });
    containerd = await startContainerd(lazyDir, augur.socket);
  });

  afterAll(async () => {
    await containerd?.stop();
    await augur?.stop();
  });

  it("augur takes every layer over: ALREADY_EXISTS, nothing downloaded by containerd", async () => {
    const r = await augurPull("--address", containerd.address, ref);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(summary(3, 0));
    // augur's stderr reaches its log file through this process's pipe, a moment later
    await waitFor("augur to log 3 lazy mounts", () => (augur.proc.log().match(/layer mounted lazily/g) ?? []).length >= 3, 10_000).catch(() => undefined);
    expect(augur.proc.log().match(/layer mounted lazily/g) ?? []).toHaveLength(3);
    const blobs = await content(containerd);
    for (const digest of image.layerDigests) expect(blobs.has(digest)).toBe(false);
  });

  it("the snapshots carry the remote-snapshot labels", async () => {
    for (const [i, chainId] of chain.entries()) {
      const info = JSON.parse(await containerd.ctrOk(["snapshots", "--snapshotter", "augur", "info", chainId])) as { Kind: string; Labels?: Record<string, string> };
      expect(info.Kind).toBe("Committed");
      expect(info.Labels).toMatchObject({
        "containerd.io/snapshot.ref": chainId,
        "containerd.io/snapshot/remote/stargz.reference": ref,
        "containerd.io/snapshot/remote/stargz.digest": image.layerDigests[i],
        "containerd.io/snapshot/remote/stargz.layers": image.layerDigests.slice(i).join(","),
      });
    }
  });

  it("ctr run sees files from every layer", async () => {
    const out = await containerd.ctrOk(["run", "--rm", "--snapshotter", "augur", ref, "pull-lazy", "sh", "-c", READ_EVERY_LAYER]);
    expectEveryLayer(out);
  });
});
