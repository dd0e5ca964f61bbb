// containerd's remote-snapshot protocol, spoken to augur directly over gRPC the
// way containerd's unpacker does (design.md section 2), with both label sets:
// Prepare("extract-<random> <chainID>", parent) with the layer labels gets
// ALREADY_EXISTS, and the List filter containerd sends next finds exactly the
// committed snapshot. Bad labels fall back to normal mounts.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { startAugur, type Augur } from "../harness/augur.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { snapshotsClient, type SnapshotsClient } from "../harness/snapshots-client.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage } from "../../scripts/images/oci-image.js";

let dir: string;
let registry: Registry;
let augur: Augur;
let client: SnapshotsClient;
let image: BuiltImage;
let ref: string;

const chainIds = (diffIds: string[]): string[] => {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length ? `sha256:${createHash("sha256").update(`${out[out.length - 1]} ${d}`).digest("hex")}` : d);
  return out;
};

beforeAll(async () => {
  dir = scratchDir("as-proto-");
  registry = await startRegistry(dir);
  augur = await startAugur(dir, { root: join(dir, "r") });
  client = snapshotsClient(augur.socket, "k8s.io");
  image = await buildImage(join(dir, "image"), {
    layers: [busyboxLayer(), [{ type: "file", path: "etc/motd", content: "served lazily\n" }]],
  });
  ref = `${registry.host}/proto/image:1`;
  pushImage(image, ref);
}, 120_000);

afterAll(async () => {
  await augur?.stop();
  await registry?.stop();
  await removeScratch(dir);
});

/** augur's stderr reaches its log file a moment after the call returns. */
const logShows = async (re: RegExp): Promise<void> => {
  await waitFor(`augur log line ${re}`, () => re.test(augur.proc.log()), 10_000).catch(() => undefined);
  expect(augur.proc.log()).toMatch(re);
};

const grpcCode = async (p: Promise<unknown>): Promise<number | undefined> => {
  try {
    await p;
    return undefined;
  } catch (err) {
    return (err as { code?: number }).code;
  }
};

describe("remote-snapshot protocol", () => {
  it("CRI label set: every layer is taken over and found by containerd's List filter", async () => {
    const chain = chainIds(image.diffIds);
    let parent = "";
    for (const [i, layer] of image.layerDigests.entries()) {
      const target = chain[i] as string;
      const labels = {
        "containerd.io/snapshot.ref": target,
        "containerd.io/snapshot/cri.image-ref": ref,
        "containerd.io/snapshot/cri.layer-digest": layer,
        "containerd.io/snapshot/cri.manifest-digest": image.manifestDigest,
        "containerd.io/snapshot/cri.image-layers": image.layerDigests.join(","),
      };
      expect(await grpcCode(client.prepare(`extract-${i}-${Date.now()} ${target}`, parent, labels))).toBe(status.ALREADY_EXISTS);
      // exactly what containerd's metadata layer sends (metadata/snapshot.go)
      const found = await client.list(`labels."containerd.io/snapshot.ref"==${target},parent==${JSON.stringify(parent)}`);
      expect(found.map((s) => s.name)).toEqual([target]);
      expect(found[0]?.kind).toBe("COMMITTED");
      expect(found[0]?.labels["containerd.io/snapshot/cri.layer-digest"]).toBe(layer);
      parent = target;
    }
    // Only the committed chain is left: no extract-* keys.
    expect((await client.list()).map((s) => s.name).sort()).toEqual([...chain].sort());
    // A container's snapshot on top reads both lazy layers through overlayfs.
    const mounts = await client.prepare("container-1", parent);
    const target = join(dir, "mnt");
    await run("mkdir", ["-p", target]);
    const opts = mounts[0]?.options.join(",") ?? "";
    expect((await run("mount", ["-t", "overlay", "overlay", "-o", opts, target])).code).toBe(0);
    try {
      const r = await run("cat", [join(target, "etc/motd")]);
      expect(r.stdout).toBe("served lazily\n");
      expect((await run("test", ["-x", join(target, "bin/busybox")])).code).toBe(0);
    } finally {
      await run("umount", [target]);
    }
    await client.remove("container-1");
  });

  it("a Prepare for a target that already exists answers ALREADY_EXISTS at once", async () => {
    const target = chainIds(image.diffIds)[0] as string;
    const labels = {
      "containerd.io/snapshot.ref": target,
      "containerd.io/snapshot/cri.image-ref": ref,
      "containerd.io/snapshot/cri.layer-digest": image.layerDigests[0] as string,
    };
    expect(await grpcCode(client.prepare(`extract-again ${target}`, "", labels))).toBe(status.ALREADY_EXISTS);
  });

  it("unusable labels fall back to normal mounts and a log line that says why", async () => {
    const labels = {
      "containerd.io/snapshot.ref": "sha256:" + "e".repeat(64),
      "containerd.io/snapshot/remote/stargz.reference": ref,
      "containerd.io/snapshot/remote/stargz.digest": "not-a-digest",
    };
    const mounts = await client.prepare("extract-bad sha256:eee", "", labels);
    expect(mounts[0]?.type).toBe("bind");
    await logShows(/layer is not served lazily.*stargz\.digest is \\?"not-a-digest\\?", not a sha256 digest/);
    await client.remove("extract-bad sha256:eee");
    const missing = { ...labels, "containerd.io/snapshot/remote/stargz.digest": "sha256:" + "d".repeat(64) };
    const m2 = await client.prepare("extract-missing", "", missing);
    expect(m2[0]?.type).toBe("bind");
    await logShows(/layer is not served lazily.*is not in image/);
    await client.remove("extract-missing");
  });
});
