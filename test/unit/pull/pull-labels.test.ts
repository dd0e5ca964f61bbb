// The labels and names `augur pull` gives containerd, against containerd's and
// stargz-snapshotter's own rules.
import { describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { chainIds } from "../../../snapshotter/pull/chain-id.js";
import { childGcLabels, distributionSourceLabel, isLayerType, joinWithinLimit, prepareLabels } from "../../../snapshotter/pull/pull-labels.js";
import { formatSummary } from "../../../snapshotter/pull/progress.js";
import { parseReference } from "../../../snapshotter/registry/reference.js";

const sha = (s: string): string => `sha256:${createHash("sha256").update(s).digest("hex")}`;
const d = (c: string): string => `sha256:${c.repeat(64)}`;
const GZ = "application/vnd.oci.image.layer.v1.tar+gzip";

describe("chainIds", () => {
  it("follows image-spec identity.ChainIDs (its own test vectors)", () => {
    const ab = sha("sha256:a sha256:b");
    expect(chainIds([])).toEqual([]);
    expect(chainIds(["sha256:a"])).toEqual(["sha256:a"]);
    expect(chainIds(["sha256:a", "sha256:b", "sha256:c"])).toEqual(["sha256:a", ab, sha(`${ab} sha256:c`)]);
  });
});

describe("childGcLabels", () => {
  it("labels a manifest's config and layers as containerd's SetChildrenLabels does", () => {
    const labels = childGcLabels([
      { mediaType: "application/vnd.oci.image.config.v1+json", digest: d("c"), size: 1 },
      { mediaType: GZ, digest: d("1"), size: 1 },
      { mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: d("2"), size: 1 },
    ]);
    expect(labels).toEqual({
      "containerd.io/gc.ref.content.config": d("c"),
      "containerd.io/gc.ref.content.l.0": d("1"),
      "containerd.io/gc.ref.content.l.1": d("2"),
    });
  });

  it("labels an index's manifests m.<i>, anything else .<i>", () => {
    expect(childGcLabels([
      { mediaType: "application/vnd.oci.image.manifest.v1+json", digest: d("a"), size: 1 },
      { mediaType: "application/vnd.docker.distribution.manifest.v2+json", digest: d("b"), size: 1 },
      { mediaType: "application/vnd.oci.image.index.v1+json", digest: d("e"), size: 1 },
    ])).toEqual({
      "containerd.io/gc.ref.content.m.0": d("a"),
      "containerd.io/gc.ref.content.m.1": d("b"),
      "containerd.io/gc.ref.content.0": d("e"),
    });
  });

  it("knows containerd's layer types", () => {
    expect(isLayerType("application/vnd.oci.image.layer.v1.tar+zstd")).toBe(true);
    expect(isLayerType("application/vnd.docker.image.rootfs.diff.tar.gzip+zstd")).toBe(true);
    expect(isLayerType("application/vnd.oci.image.config.v1+json")).toBe(false);
  });
});

describe("distributionSourceLabel", () => {
  it("adds the repository once to what the blob already names", () => {
    const ref = parseReference("registry.example/team/app:1");
    expect(distributionSourceLabel(ref)).toEqual({ "containerd.io/distribution.source.registry.example": "team/app" });
    expect(distributionSourceLabel(ref, { "containerd.io/distribution.source.registry.example": "other/x,team/app" }))
      .toEqual({ "containerd.io/distribution.source.registry.example": "other/x,team/app" });
  });
});

describe("prepareLabels", () => {
  const layers = [
    { mediaType: GZ, digest: d("1"), size: 1, annotations: { "containerd.io/snapshot/stargz/toc.digest": d("t"), "org.example/other": "x" } },
    { mediaType: GZ, digest: d("2"), size: 1, urls: ["https://a.example/blob"] },
    { mediaType: GZ, digest: d("3"), size: 1 },
  ];

  it("sets containerd's target label, stargz-snapshotter's remote labels and inherits snapshot annotations", () => {
    expect(prepareLabels("r.example/app:1", layers, 0, "sha256:chain")).toEqual({
      "containerd.io/snapshot.ref": "sha256:chain",
      "containerd.io/snapshot/remote/stargz.reference": "r.example/app:1",
      "containerd.io/snapshot/remote/stargz.digest": d("1"),
      "containerd.io/snapshot/remote/stargz.layers": [d("1"), d("2"), d("3")].join(","),
      "containerd.io/snapshot/remote/urls.1": "https://a.example/blob",
      "containerd.io/snapshot/stargz/toc.digest": d("t"),
    });
    expect(prepareLabels("r.example/app:1", layers, 1, "sha256:c2")).toMatchObject({
      "containerd.io/snapshot/remote/stargz.layers": [d("2"), d("3")].join(","),
      "containerd.io/snapshot/remote/urls": "https://a.example/blob",
    });
  });

  it("cuts the layer list to containerd's 4096-byte label limit", () => {
    const many = Array.from({ length: 100 }, (_, i) => ({ mediaType: GZ, digest: sha(String(i)), size: 1 }));
    const labels = prepareLabels("r.example/app:1", many, 0, "sha256:x");
    for (const [k, v] of Object.entries(labels)) expect(Buffer.byteLength(k) + Buffer.byteLength(v)).toBeLessThanOrEqual(4096);
    const listed = labels["containerd.io/snapshot/remote/stargz.layers"]?.split(",") ?? [];
    expect(listed).toEqual(many.slice(0, listed.length).map((l) => l.digest));
    expect(listed.length).toBe(Math.floor((4096 - "containerd.io/snapshot/remote/stargz.layers".length + 1) / 72));
    expect(joinWithinLimit("k", [])).toBe("");
  });
});

describe("formatSummary", () => {
  it("prints one line; present layers only when there are some", () => {
    expect(formatSummary({ image: "r/app:1", layers: 3, lazy: 2, unpacked: 1, present: 0, seconds: 1.234 })).toBe("r/app:1: 3 layers, 2 lazy, 1 unpacked, in 1.2 s");
    expect(formatSummary({ image: "r/app:1", layers: 3, lazy: 0, unpacked: 0, present: 3, seconds: 0.05 })).toBe("r/app:1: 3 layers, 0 lazy, 0 unpacked, 3 present, in 0.1 s");
  });
});
