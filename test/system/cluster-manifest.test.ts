// The cluster manifest through a real registry (Debian's docker-registry:
// no referrers API, so the sha256-<hex> tag schema) and real containerd.
// Node 1 runs an image, builds its profile and pushes it, and the whole
// cluster manifest; node 2, with an empty root, starts the image with
// random access from its first read (no whole-layer stream) and its files
// prefetched; node 3 starts an image never run anywhere that shares the base
// layer, prefetched from the cluster manifest alone. Then hostile artifacts:
// nothing wrong is served, each lie is logged once, the containers see their
// layers' true contents.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { createReadStream, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AUGUR_BIN, startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, run, scratchDir, waitFor } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage, type BuiltImage, type LayerEntry } from "../../scripts/images/oci-image.js";
import { RegistryClient } from "../../snapshotter/registry/registry-client.js";
import { parseReference } from "../../snapshotter/registry/reference.js";
import { pushArtifact, repositoryOf } from "../../snapshotter/manifest/manifest-artifact.js";
import { CLUSTER_MANIFEST_MEDIA_TYPE, PROFILE_ARTIFACT_TYPE, parseClusterManifest, type ClusterManifest } from "../../snapshotter/manifest/cluster-manifest.js";
import { buildTarIndex, type TarIndex } from "../../snapshotter/layer/tar-index.js";
import { serializeTarIndex, TAR_INDEX_MEDIA_TYPE, TAR_INDEX_MEDIA_TYPE_V3 } from "../../snapshotter/layer/tar-index-codec.js";
import { serializeTarIndexV3 } from "../unit/layer/helpers.js";

const FILES = 160;
const SIZE = 16 << 10;
const LAYER_MEDIA = "application/vnd.oci.image.layer.v1.tar+gzip";
const md5 = (b: Buffer | string): string => createHash("md5").update(b).digest("hex");
const name = (i: number): string => `data/f${String(i).padStart(3, "0")}`;
const dataLayer = (content: Buffer[]): LayerEntry[] => [{ type: "dir", path: "data" }, ...content.map((c, i): LayerEntry => ({ type: "file", path: name(i), content: c }))];
/** md5 of each file read, then md5 of that list: what the container prints. */
const script = (paths: string[]): string => `md5sum ${paths.map((p) => `/${p}`).join(" ")} | cut -d' ' -f1 | md5sum | cut -d' ' -f1`;
const expected = (contents: Buffer[]): string => md5(contents.map((c) => `${md5(c)}\n`).join(""));

const tools = busyboxLayer();
const base = Array.from({ length: FILES }, () => randomBytes(SIZE));
/** What the workload reads of the base layer: 50 files of the first half, scattered. */
const reads = Array.from({ length: 50 }, (_, k) => (k * 7) % (FILES / 2));
const own = { a: randomBytes(32 << 10), b: randomBytes(32 << 10) };
const appLayer = (tag: "a" | "b"): LayerEntry[] => [{ type: "dir", path: "app" }, { type: "file", path: `app/${tag}.txt`, content: own[tag] }];
const workload = (tag: "a" | "b"): string => script([...reads.map(name), `app/${tag}.txt`]);
const workloadOut = (tag: "a" | "b"): string => expected([...reads.map((i) => base[i] as Buffer), own[tag]]);

interface LayerStatus { layer: string; format: string; readHitBytes: number; readMissBytes: number; predictedBytes: number }

interface Node {
  augur: Augur;
  containerd: Containerd;
  log: () => string;
  stop: () => Promise<void>;
}

let dir: string;
let registry: Registry;
let client: RegistryClient;
const images: Record<string, BuiltImage> = {};
const refs = { a: "", b: "", cluster: "" };

async function startNode(nodeName: string, args: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Node> {
  const d = join(dir, nodeName);
  mkdirSync(d, { recursive: true });
  const augur = await startAugur(d, { root: join(d, "r"), extraArgs: ["--no-native-copy", ...args], env });
  const containerd = await startContainerd(d, augur.socket).catch(async (err: unknown) => {
    await augur.stop();
    throw err;
  });
  return {
    augur, containerd,
    log: () => readFileSync(join(d, "augur.log"), "utf8"),
    stop: async () => {
      await containerd.stop();
      await augur.stop();
    },
  };
}

const rpull = async (node: Node, ref: string): Promise<void> => {
  const r = await run("ctr-remote", ["--address", node.containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`rpull ${ref}: ${r.stderr}`);
};
const ctrRun = async (node: Node, ref: string, id: string, sh: string): Promise<string> =>
  (await node.containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, id, "sh", "-c", sh], 120_000)).trim();
const augurCli = (args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> => run(process.execPath, [AUGUR_BIN, ...args], { timeoutMs: 60_000 });

async function layerStatus(node: Node, digest: string): Promise<LayerStatus> {
  const r = await run("curl", ["-sf", "--unix-socket", node.augur.apiSocket, "http://augur/cache/status"]);
  const l = (JSON.parse(r.stdout) as { layers: LayerStatus[] }).layers.find((x) => x.layer === digest);
  if (!l) throw new Error(`layer ${digest} is not mounted`);
  return l;
}
async function metric(node: Node, line: RegExp): Promise<number> {
  const text = (await run("curl", ["-sf", "--unix-socket", node.augur.apiSocket, "http://augur/metrics"])).stdout;
  return Number(text.split("\n").find((l) => line.test(l))?.split(" ").pop() ?? NaN);
}
/** Blob GETs in access-log text: [digest, status] of each. */
const blobGets = (log: string): [string, string][] =>
  [...log.matchAll(/"GET \/v2\/\S+\/blobs\/(sha256:[0-9a-f]{64}) HTTP\/[\d.]+" (\d{3})/g)].map((m) => [m[1] as string, m[2] as string]);
const count = (text: string, ...parts: string[]): number => text.split("\n").filter((l) => parts.every((p) => l.includes(p))).length;

beforeAll(async () => {
  dir = scratchDir("as-cluster-");
  registry = await startRegistry(dir);
  client = new RegistryClient({ plainHttp: true });
  images.a = await buildImage(join(dir, "img-a"), { layers: [tools, dataLayer(base), appLayer("a")], cmd: ["/bin/sh"] });
  images.b = await buildImage(join(dir, "img-b"), { layers: [tools, dataLayer(base), appLayer("b")], cmd: ["/bin/sh"] });
  refs.a = `${registry.host}/cluster/a:1`;
  refs.b = `${registry.host}/cluster/b:1`;
  refs.cluster = `${registry.host}/augur/cluster:test`;
  pushImage(images.a, refs.a);
  pushImage(images.b, refs.b);
}, 300_000);

afterAll(async () => {
  await client?.close();
  await registry?.stop();
  await removeScratch(dir);
}, 120_000);

describe("the cluster manifest through the registry", () => {
  it("node 1 runs the image and pushes its profile and the cluster manifest; the CLI shows and pulls them back", async () => {
    const n1 = await startNode("node1");
    try {
      await rpull(n1, refs.a);
      expect(await ctrRun(n1, refs.a, "a-node1", workload("a"))).toBe(workloadOut("a"));
      const root = n1.augur.root;
      const out = join(dir, "built.json");
      const built = await augurCli(["manifest", "build", "--root", root, "--out", out]);
      expect(built.code, built.stderr).toBe(0);
      const m = parseClusterManifest(readFileSync(out), out);
      expect(m.workloads).toHaveLength(1);
      const w = m.workloads[0] as ClusterManifest["workloads"][number];
      expect(w.image).toBe(refs.a);
      expect(w.files.map((f) => f.path)).toEqual(expect.arrayContaining([...reads.map(name), "app/a.txt"]));
      expect(w.files.filter((f) => f.path.startsWith("data/"))).toHaveLength(reads.length);
      expect(w.layerPreference[0]).toBe(images.a?.layerDigests[0]); // sh first, from the tools layer
      for (const l of images.a?.layerDigests ?? []) expect(m.layers[l]?.index?.mediaType).toBe(TAR_INDEX_MEDIA_TYPE);
      const shown = await augurCli(["manifest", "show", out]);
      expect(shown.stdout).toMatch(/1 workloads, 3 layers \(3 with a seekable index\)/);

      // a thin index for the base layer (its second half is never read): node 2 serves the image from it
      const badGap = await augurCli(["manifest", "push", "--root", root, "--plain-http", "--thin-gap", "lots", refs.a]);
      expect(badGap.code).toBe(1);
      expect(badGap.stderr).toMatch(/--thin-gap "lots" is not a whole number of bytes/);
      const pushed = await augurCli(["manifest", "push", "--root", root, "--plain-http", "--thin-gap", String(1 << 20), refs.a]);
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(pushed.stdout).toMatch(/^pushed sha256:[0-9a-f]{64} .*1 workload profiles from 1 runs, 3 layer indexes \([0-9.]+ MB; thinned to \d+ of \d+ access points/);
      const [, kept, all] = /thinned to (\d+) of (\d+)/.exec(pushed.stdout) ?? [];
      expect(Number(kept)).toBeLessThan(Number(all));
      const cluster = await augurCli(["manifest", "push", "--root", root, "--plain-http", "--cluster", refs.cluster]);
      expect(cluster.code, cluster.stderr).toBe(0);
      // back from the registry, by the image (tag schema) and by the cluster reference
      const pulled = await augurCli(["manifest", "pull", "--plain-http", refs.a]);
      expect(pulled.code, pulled.stderr).toBe(0);
      expect(parseClusterManifest(pulled.stdout).workloads[0]?.signature).toBe(w.signature);
      const shownRemote = await augurCli(["manifest", "show", "--plain-http", "--cluster", refs.cluster]);
      expect(shownRemote.stdout).toMatch(/1 workloads, 3 layers/);
      // bad input names the problem
      const none = await augurCli(["manifest", "pull", "--plain-http", refs.b]);
      expect(none.code).toBe(1);
      expect(none.stderr).toMatch(/has no augur profile attached/);
      const missing = await augurCli(["manifest", "show", join(dir, "nope.json")]);
      expect(missing.stderr).toMatch(/no file .*nope\.json/);
      const noImage = await augurCli(["manifest", "push", "--root", root, "--plain-http", `${registry.host}/cluster/none:1`]);
      expect(noImage.code).toBe(1);
      expect(noImage.stderr).toMatch(/not found/);
      const noRoot = await augurCli(["manifest", "build", "--root", join(dir, "no-root")]);
      expect(noRoot.stderr).toMatch(/augur root .* does not exist/);
    } finally {
      await n1.stop();
    }
  }, 300_000);

  it("node 2, empty, reads the image by range from its first read and finds its files prefetched", async () => {
    // the whole-layer check is put off past the test: this asserts what the start-up fetched
    const n2 = await startNode("node2", ["--cluster-manifest", refs.cluster], { AUGUR_WHOLE_CHECK_DELAY_MS: "600000" });
    try {
      const from = (await registry.settledLog()).length;
      await rpull(n2, refs.a);
      const baseLayer = images.a?.layerDigests[1] as string;
      expect(await ctrRun(n2, refs.a, "a-node2", workload("a"))).toBe(workloadOut("a"));
      const gets = blobGets((await registry.settledLog()).slice(from)).filter(([d]) => images.a?.layerDigests.includes(d));
      expect(gets.length).toBeGreaterThan(0);
      expect(gets.filter(([, status]) => status !== "206")).toEqual([]); // ranges only: no whole-layer stream
      const l = await layerStatus(n2, baseLayer);
      expect(l.format).toBe("registry-index");
      expect(l.readHitBytes / (l.readHitBytes + l.readMissBytes)).toBeGreaterThanOrEqual(0.9);
      expect(await metric(n2, /^augur_prefetch_fetched_bytes_total\{reason="soon"\} /) + await metric(n2, /^augur_prefetch_fetched_bytes_total\{reason="later"\} /)).toBeGreaterThan(reads.length * SIZE * 0.9);
      expect(count(n2.log(), "profile artifact found for the image")).toBe(1);

      // node 2 pushes its own profile before it has checked those layers whole: the indexes it
      // served from are carried over, so the newest artifact still gives the next node random access
      const pushed = await augurCli(["manifest", "push", "--root", n2.augur.root, "--plain-http", refs.a]);
      expect(pushed.code, pushed.stderr).toBe(0);
      expect(pushed.stdout, pushed.stdout).toMatch(/3 layer indexes \(.*3 carried over from sha256:[0-9a-f]{64}/);
      const newest = await augurCli(["manifest", "pull", "--plain-http", refs.a]);
      expect(newest.code, newest.stderr).toBe(0);
      const m = parseClusterManifest(newest.stdout);
      for (const d of images.a?.layerDigests ?? []) expect(m.layers[d]?.index?.mediaType).toBe(TAR_INDEX_MEDIA_TYPE);
      // and so does the cluster manifest it replaces (node 3 starts from it)
      const cluster = await augurCli(["manifest", "push", "--root", n2.augur.root, "--plain-http", "--cluster", refs.cluster]);
      expect(cluster.code, cluster.stderr).toBe(0);
      expect(cluster.stdout, cluster.stdout).toMatch(/3 layer indexes \(.*3 carried over from sha256:[0-9a-f]{64}/);
    } finally {
      await n2.stop();
    }
  }, 300_000);

  it("node 3 starts an image never run anywhere that shares the base layer, prefetched from the cluster manifest", async () => {
    const n3 = await startNode("node3", ["--cluster-manifest", refs.cluster]);
    try {
      await rpull(n3, refs.b);
      expect(await ctrRun(n3, refs.b, "b-node3", workload("b"))).toBe(workloadOut("b"));
      const l = await layerStatus(n3, images.b?.layerDigests[1] as string);
      expect(l.predictedBytes).toBeGreaterThan(0);
      expect(l.readHitBytes / (l.readHitBytes + l.readMissBytes)).toBeGreaterThanOrEqual(0.9);
      expect(count(n3.log(), "cluster manifest loaded")).toBe(1);
    } finally {
      await n3.stop();
    }
  }, 300_000);
});

// ---- hostile artifacts ----

interface Hostile {
  image: BuiltImage;
  ref: string;
  /** The layer the lie is about. */
  layer: string;
  /** What the container runs, and what it must print. */
  sh: string;
  out: string;
  /** The log line (parts) that must appear exactly once. */
  logged: string[];
}

async function indexOf(image: BuiltImage, layer: string): Promise<TarIndex> {
  return buildTarIndex(createReadStream(join(image.dir, "blobs", "sha256", layer.slice(7))), { digest: layer, mediaType: LAYER_MEDIA });
}
const path = (r: { path: string }): string => r.path.replace(/^\.\//, "");

/** Pushes an artifact for `image` holding `manifest` (bytes as given) and `index` for `layer`. */
async function pushProfile(image: BuiltImage, ref: string, manifest: Buffer, index?: PublishedIndex): Promise<void> {
  const got = await client.manifestBytes(ref, "1");
  if (!got) throw new Error(`${ref} not found`);
  const blobs = [{ mediaType: CLUSTER_MANIFEST_MEDIA_TYPE, bytes: manifest }];
  if (index) blobs.push({ mediaType: index.mediaType ?? TAR_INDEX_MEDIA_TYPE, bytes: index.bytes });
  await pushArtifact(client, repositoryOf(parseReference(ref)), {
    artifactType: PROFILE_ARTIFACT_TYPE, blobs, subject: { mediaType: got.mediaType ?? "application/vnd.oci.image.manifest.v1+json", digest: got.digest, size: got.bytes.length },
  });
  void image;
}

/** An index in an artifact: its layer, its bytes, and its media type (default this augur's). */
interface PublishedIndex {
  layer: string;
  bytes: Buffer;
  mediaType?: string;
}

function manifestFor(layers: string[], indexFor: PublishedIndex | undefined, files: { layer: string; path: string }[] = []): ClusterManifest {
  const index = indexFor ? { digest: `sha256:${createHash("sha256").update(indexFor.bytes).digest("hex")}`, size: indexFor.bytes.length, mediaType: indexFor.mediaType ?? TAR_INDEX_MEDIA_TYPE } : undefined;
  return {
    schemaVersion: 1, mediaType: CLUSTER_MANIFEST_MEDIA_TYPE, builtBy: { tool: "test", node: "hostile", at: new Date().toISOString() }, runs: 1,
    workloads: files.length
      ? [{ signature: `sha256:${"7".repeat(64)}`, layers, args: ["sh"], cwd: "/", env: {}, runs: 1, granularity: 4, layerPreference: layers, files: files.map((f, order) => ({ ...f, ranges: [[0, SIZE]], order, confidence: 1 })) }]
      : [],
    layers: indexFor && index ? { [indexFor.layer]: { index } } : {},
  };
}

describe("hostile artifacts in the registry", () => {
  const cases: Hostile[] = [];
  let node: Node;

  beforeAll(async () => {
    const files = (n: number): Buffer[] => Array.from({ length: n }, () => randomBytes(SIZE));
    const make = async (tag: string, layers: LayerEntry[][]): Promise<{ image: BuiltImage; ref: string }> => {
      const image = await buildImage(join(dir, `hostile-${tag}`), { layers, cmd: ["/bin/sh"] });
      const ref = `${registry.host}/hostile/${tag}:1`;
      pushImage(image, ref);
      return { image, ref };
    };
    const all = (c: Buffer[]): string[] => c.map((_, i) => name(i));

    { // an entry pointed at another file's bytes: f000 and f001 trade places (the entries still tile the tar)
      const c = files(10);
      const { image, ref } = await make("swapped", [tools, dataLayer(c)]);
      const layer = image.layerDigests[1] as string;
      const index = await indexOf(image, layer);
      const i0 = index.entries.findIndex((e) => path(e) === name(0));
      const i1 = index.entries.findIndex((e) => path(e) === name(1));
      const [e0, e1] = [index.entries[i0], index.entries[i1]] as [TarIndex["entries"][number], TarIndex["entries"][number]];
      index.entries[i0] = { ...e0, path: e1.path };
      index.entries[i1] = { ...e1, path: e0.path };
      const bytes = serializeTarIndex(index).bytes;
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes }))), { layer, bytes });
      cases.push({ image, ref, layer, sh: script(all(c)), out: expected(c), logged: ["does not match the layer's tar; dropped", layer] });
    }
    { // a wrong size
      const c = files(10);
      const { image, ref } = await make("size", [tools, dataLayer(c)]);
      const layer = image.layerDigests[1] as string;
      const index = await indexOf(image, layer);
      const e = index.entries.find((x) => path(x) === name(2));
      if (!e) throw new Error("no f002");
      e.size = SIZE * 4;
      const bytes = serializeTarIndex(index).bytes;
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes }))), { layer, bytes });
      cases.push({ image, ref, layer, sh: `${script(all(c))}; stat -c %s /data/f002`, out: `${expected(c)}\n${SIZE}`, logged: ["does not match the layer's tar; dropped", layer] });
    }
    { // a whiteout left out
      const c = files(10);
      const { image, ref } = await make("whiteout", [tools, dataLayer(c), [
        { type: "dir", path: "app" }, { type: "file", path: "app/x.txt", content: "x\n" },
        { type: "whiteout", path: name(1) }, { type: "file", path: "app/y.txt", content: "y\n" },
      ]]);
      const layer = image.layerDigests[2] as string;
      const index = await indexOf(image, layer);
      index.entries = index.entries.filter((e) => !path(e).endsWith(".wh.f001"));
      const bytes = serializeTarIndex(index).bytes;
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes }))), { layer, bytes });
      cases.push({ image, ref, layer, sh: "ls /data | tr '\\n' ' '; cat /data/f001 >/dev/null 2>&1 || echo gone", out: `${all(c).filter((p) => p !== name(1)).map((p) => p.slice(5)).join(" ")} gone`, logged: ["does not fit the layer; ignored", layer] });
    }
    { // a profile listing paths that do not exist (with a true index)
      const c = files(10);
      const { image, ref } = await make("paths", [tools, dataLayer(c)]);
      const layer = image.layerDigests[1] as string;
      const bytes = serializeTarIndex(await indexOf(image, layer)).bytes;
      const wanted = [{ layer, path: "data/nope-1" }, { layer, path: "data/nope-2" }, { layer, path: name(3) }];
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes }, wanted))), { layer, bytes });
      cases.push({ image, ref, layer, sh: script(all(c)), out: expected(c), logged: ["predicted file is not in its layer", layer] });
    }
    { // a truncated artifact: its cluster manifest cut short
      const c = files(10);
      const { image, ref } = await make("truncated", [tools, dataLayer(c)]);
      const layer = image.layerDigests[1] as string;
      const bytes = serializeTarIndex(await indexOf(image, layer)).bytes;
      const whole = Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes })));
      await pushProfile(image, ref, whole.subarray(0, whole.length >> 1), { layer, bytes });
      cases.push({ image, ref, layer, sh: script(all(c)), out: expected(c), logged: ["profile artifact in the registry is not usable; ignored", "hostile/truncated"] });
    }
    { // a truncated index blob
      const c = files(10);
      const { image, ref } = await make("truncated-index", [tools, dataLayer(c)]);
      const layer = image.layerDigests[1] as string;
      const bytes = serializeTarIndex(await indexOf(image, layer)).bytes.subarray(0, 200);
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes }))), { layer, bytes });
      cases.push({ image, ref, layer, sh: script(all(c)), out: expected(c), logged: ["does not fit the layer; ignored", layer] });
    }
    { // an entry's extended attributes left out, the index claiming the layer has none: not believed,
      // the entry's check finds the lie before it is shown, and the layer is read without the index
      const c = files(10);
      const { image, ref } = await make("xattrs", [tools, [...dataLayer(c), { type: "file", path: "data/xf", content: "x\n", xattrs: { "user.origin": "hostile-test" } }]]);
      const layer = image.layerDigests[1] as string;
      const index = await indexOf(image, layer);
      const e = index.entries.find((x) => path(x) === "data/xf");
      if (!e || Object.keys(e.xattrs).length === 0) throw new Error("no data/xf with xattrs");
      e.xattrs = {};
      const bytes = serializeTarIndex(index).bytes;
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, { layer, bytes }))), { layer, bytes });
      cases.push({ image, ref, layer, sh: `${script(all(c))}; cat /data/xf`, out: `${expected(c)}\nx`, logged: ["does not match the layer's tar; dropped", layer] });
    }
    { // not hostile: an index an augur before format v4 published (AUGURIX3, media type v3) is still used
      const c = files(10);
      const { image, ref } = await make("index-v3", [tools, dataLayer(c)]);
      const layer = image.layerDigests[1] as string;
      const v3 = { layer, bytes: serializeTarIndexV3(await indexOf(image, layer)), mediaType: TAR_INDEX_MEDIA_TYPE_V3 };
      await pushProfile(image, ref, Buffer.from(JSON.stringify(manifestFor(image.layerDigests, v3))), v3);
      cases.push({ image, ref, layer, sh: script(all(c)), out: expected(c), logged: ["layer index from the registry matched the whole layer", layer] });
    }
    node = await startNode("hostile", [], { AUGUR_WHOLE_CHECK_DELAY_MS: "1000" });
  }, 300_000);

  afterAll(async () => {
    await node?.stop();
  }, 60_000);

  it("serves nothing wrong: each container sees its layers' true contents, and each lie is logged once (a true index of format v3, as earlier augurs published, is used)", async () => {
    for (const [i, c] of cases.entries()) {
      await rpull(node, c.ref);
      expect(await ctrRun(node, c.ref, `hostile-${i}`, c.sh), c.ref).toBe(c.out);
    }
    // the whole-layer checks run in the background: wait until each lie has been logged
    await waitFor("every lie to be logged", () => cases.every((c) => count(node.log(), ...c.logged) >= 1), 30_000);
    const log = node.log();
    for (const c of cases) expect(count(log, ...c.logged), `${c.ref}: ${c.logged.join(" ")}`).toBe(1);
    // nothing was served from an index that lied: no layer is still read through one
    for (const c of cases.slice(0, 3)) expect(count(log, "matched the whole layer", c.layer)).toBe(0);
  }, 300_000);
});
