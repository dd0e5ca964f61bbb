// When augur cannot take a layer over, containerd must still get the image:
// augur answers Prepare with normal mounts, containerd downloads and unpacks
// the layer itself, and augur logs one line saying why.
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { freePort, removeScratch, run, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";

let dir: string;
let registry: Registry;
let image: BuiltImage;
let ref: string;
const started: { augur?: Augur; containerd?: Containerd; dir?: string }[] = [];

beforeAll(async () => {
  dir = scratchDir("as-fallb-");
  registry = await startRegistry(dir);
  image = await buildImage(join(dir, "image"), {
    layers: [busyboxLayer(), [{ type: "dir", path: "app" }, { type: "file", path: "app/hello.txt", content: "unpacked by containerd\n" }]],
    cmd: ["/bin/cat", "/app/hello.txt"],
  });
  ref = `${registry.host}/fallback/image:1`;
  pushImage(image, ref);
}, 120_000);

afterEach(async () => {
  for (const s of started.splice(0)) {
    await s.containerd?.stop();
    await s.augur?.stop();
    if (s.dir) await removeScratch(s.dir);
  }
}, 120_000);

afterAll(async () => {
  await registry?.stop();
  await removeScratch(dir);
});

async function node(name: string, extraArgs: (d: string) => string[]): Promise<{ augur: Augur; containerd: Containerd }> {
  const d = scratchDir(`as-${name}-`);
  const entry: (typeof started)[number] = { dir: d };
  started.push(entry);
  entry.augur = await startAugur(d, { root: join(d, "r"), extraArgs: extraArgs(d) });
  entry.containerd = await startContainerd(d, entry.augur.socket);
  return { augur: entry.augur, containerd: entry.containerd };
}

async function pullAndRun(c: Containerd, id: string): Promise<string> {
  const pulled = await run("ctr-remote", ["--address", c.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
  expect(pulled.code, pulled.stderr).toBe(0);
  return c.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, id], 60_000);
}

/** Mounts augur serves through FUSE under its root. */
async function fuseMounts(augur: Augur): Promise<number> {
  const r = await run("sh", ["-c", `grep ' ${augur.root}/s/' /proc/self/mountinfo | grep -c fuse || true`]);
  return Number(r.stdout.trim());
}

describe("falling back to a normal unpack", () => {
  it("lazy pulling disabled by configuration: containerd unpacks, augur says why", async () => {
    const { augur, containerd } = await node("nolazy", () => ["--no-lazy"]);
    expect(await pullAndRun(containerd, "nolazy")).toBe("unpacked by containerd\n");
    expect(await fuseMounts(augur)).toBe(0);
    const why = augur.proc.log().split("\n").filter((l) => l.includes("layer is not served lazily"));
    expect(why).toHaveLength(image.layerDigests.length); // one line per layer
    expect(why[0]).toContain("lazy pulling is disabled in the configuration");
  });

  it("registry unreachable from augur at Prepare: containerd unpacks, augur says why", async () => {
    const dead = await freePort();
    const { augur, containerd } = await node("unreach", (d) => {
      // augur's hosts.toml sends it to a port nobody listens on; containerd goes to the registry.
      mkdirSync(join(d, "hosts", registry.host), { recursive: true });
      writeFileSync(join(d, "hosts", registry.host, "hosts.toml"), `server = "http://127.0.0.1:${dead}"\n`);
      return ["--hosts-dir", join(d, "hosts")];
    });
    expect(await pullAndRun(containerd, "unreach")).toBe("unpacked by containerd\n");
    expect(await fuseMounts(augur)).toBe(0);
    const why = augur.proc.log().split("\n").filter((l) => l.includes("layer is not served lazily"));
    expect(why.length).toBeGreaterThanOrEqual(1);
    expect(why[0]).toMatch(new RegExp(`127\\.0\\.0\\.1:${dead}`));
  }, 180_000);
});
