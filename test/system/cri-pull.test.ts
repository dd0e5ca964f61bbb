// Kubernetes' path end to end: containerd with its CRI plugin enabled and
// containerd-config.toml's CRI settings (snapshotter = "augur",
// disable_snapshot_annotations = false). An image pulled through CRI's
// ImageService.PullImage, as the kubelet pulls, is taken over by augur layer by
// layer from the labels CRI writes itself: containerd stores no layer blob,
// every layer is an augur FUSE mount, and a container runs from it: with ctr,
// and as the kubelet runs one, in a pod (RuntimeService: a host-network sandbox,
// whose pause container is itself pulled through augur, then a container in it).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { criClient, type Cri, type PodSandboxConfig } from "../harness/cri.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";

const BIG = randomBytes(4 << 20);
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

let dir: string;
let registry: Registry;
let augur: Augur;
let containerd: Containerd;
let cri: Cri;
let image: BuiltImage;
let ref: string;
let pauseRef: string;
let pause: BuiltImage;

function chainTop(img: BuiltImage): string {
  let chain = "";
  for (const diff of img.diffIds) chain = chain ? `sha256:${createHash("sha256").update(`${chain} ${diff}`).digest("hex")}` : diff;
  return chain;
}

beforeAll(async () => {
  dir = scratchDir("as-cri-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r") });
  // CRI resolves registries through containerd's hosts directory, as configured on a node.
  const hostsDir = join(dir, "certs.d");
  mkdirSync(join(hostsDir, registry.host), { recursive: true });
  writeFileSync(join(hostsDir, registry.host, "hosts.toml"), `server = "http://${registry.host}"\n\n[host."http://${registry.host}"]\n  capabilities = ["pull", "resolve"]\n`);
  // The sandbox's pause container: anything that sleeps until CRI stops it.
  pauseRef = `${registry.host}/cri/pause:1`;
  pause = await buildImage(join(dir, "pause"), { layers: [busyboxLayer(), [{ type: "file", path: "pause", content: "a pod's sandbox\n" }]], cmd: ["/bin/sleep", "86400"] });
  pushImage(pause, pauseRef);
  containerd = await startContainerd(dir, augur.socket, { cri: { hostsDir, sandboxImage: pauseRef } });
  cri = criClient(containerd.address);
  await waitFor("containerd's CRI plugin to answer", () => cri.version().then(() => true, () => false), 30_000, containerd.proc);
  image = await buildImage(join(dir, "img"), {
    layers: [
      busyboxLayer(),
      [{ type: "dir", path: "app" }, { type: "file", path: "app/hello.txt", content: "hello through CRI\n" }, { type: "file", path: "app/big.bin", content: BIG }],
    ],
    cmd: ["/bin/sh"],
  });
  ref = `${registry.host}/cri/hello:1`;
  pushImage(image, ref);
}, 300_000);

afterAll(async () => {
  cri?.close();
  await containerd?.stop();
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("pulling through CRI", () => {
  it("CRI answers on containerd's socket", async () => {
    const v = await cri.version();
    expect(v.runtime_name).toBe("containerd");
    expect(v.runtime_api_version).toBe("v1");
  });

  it("ImageService.PullImage hands every layer to augur, lazily", async () => {
    const imageRef = await cri.pullImage(ref);
    expect(imageRef).toMatch(/^sha256:[0-9a-f]{64}$/);
    const status = await cri.imageStatus(ref);
    expect(status?.repo_tags).toContain(ref);
    expect(status?.id).toBe(imageRef);
    // CRI's own labels reached augur: it mounted each layer itself ...
    expect((augur.proc.log().match(/layer mounted lazily/g) ?? []).length).toBeGreaterThanOrEqual(image.layerDigests.length);
    const info = await containerd.ctrOk(["-n", "k8s.io", "snapshots", "--snapshotter", "augur", "info", chainTop(image)]);
    // containerd recorded the layer as committed by augur itself (the
    // remote-snapshot path: the snapshot's ref is its own chain ID), with CRI's labels.
    expect(info).toContain(`"containerd.io/snapshot.ref": "${chainTop(image)}"`);
    expect(info).toContain(`"containerd.io/snapshot/cri.image-ref": "${ref}"`);
    const mounts = await run("sh", ["-c", `grep -c ' ${augur.root}/s/[0-9]*/fs ' /proc/self/mountinfo`]);
    expect(Number(mounts.stdout.trim())).toBeGreaterThanOrEqual(image.layerDigests.length);
    // ... and containerd fetched no layer blob into its content store.
    const content = await containerd.ctrOk(["-n", "k8s.io", "content", "ls", "-q"]);
    for (const layer of image.layerDigests) expect(content).not.toContain(layer);
  });

  it("a container runs from the CRI-pulled image, byte-exact", async () => {
    const out = await containerd.ctr(["-n", "k8s.io", "run", "--snapshotter", "augur", "--rm", ref, "cri-1", "sh", "-c", "cat /app/hello.txt; md5sum /app/big.bin"], 120_000);
    expect(out.stderr).toBe("");
    expect(out.stdout).toBe(`hello through CRI\n${md5(BIG)}  /app/big.bin\n`);
  });

  it("a pod runs a container from it through RuntimeService, as the kubelet does", async () => {
    const logDir = join(dir, "pods", "cri-pod");
    mkdirSync(logDir, { recursive: true });
    const sandboxConfig: PodSandboxConfig = {
      metadata: { name: "cri-pod", uid: "0c6a0e5e-augur-test", namespace: "default", attempt: 0 },
      log_directory: logDir,
      // the node's network: no CNI plugin is installed here
      linux: { security_context: { namespace_options: { network: "NODE" } } },
    };
    const sandbox = await cri.runPodSandbox(sandboxConfig);
    try {
      const id = await cri.createContainer(sandbox, {
        metadata: { name: "app" },
        image: { image: ref },
        command: ["sh", "-c", "cat /app/hello.txt; md5sum /app/big.bin"],
        log_path: "app.log",
      }, sandboxConfig);
      await cri.startContainer(id);
      await waitFor("the pod's container to exit", async () => (await cri.containerStatus(id)).state === "CONTAINER_EXITED", 60_000);
      const status = await cri.containerStatus(id);
      expect(status.exit_code).toBe(0);
      // CRI's log format: <time> <stream> <tag> <line>
      const lines = readFileSync(join(logDir, "app.log"), "utf8").trimEnd().split("\n").map((l) => l.split(" ").slice(3).join(" "));
      expect(lines).toEqual(["hello through CRI", `${md5(BIG)}  /app/big.bin`]);
      await cri.removeContainer(id);
      // CRI pulled the sandbox's pause image through augur as well, lazily
      expect(augur.proc.log()).toContain(`layer mounted lazily layer=${pause.layerDigests[1]}`);
      expect(await containerd.ctrOk(["-n", "k8s.io", "images", "ls", "-q"])).toContain(pauseRef);
    } finally {
      await cri.stopPodSandbox(sandbox);
      await cri.removePodSandbox(sandbox);
    }
  });

  it("a missing image is a CRI error naming it, and nothing already pulled is lost", async () => {
    await expect(cri.pullImage(`${registry.host}/cri/absent:1`)).rejects.toThrow(/absent/);
    expect((await cri.imageStatus(ref))?.repo_tags).toContain(ref);
  });
});
