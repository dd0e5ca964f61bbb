import { describe, expect, it } from "vitest";
import { layerSourceFromLabels } from "../../../snapshotter/source/labels.js";

const d = (c: string) => `sha256:${c.repeat(64)}`;

describe("layerSourceFromLabels", () => {
  it("ignores a plain Prepare", () => {
    expect(layerSourceFromLabels({ "containerd.io/snapshot.ref": d("a") })).toEqual({ kind: "none" });
  });

  it("reads the stargz label set (ctr-remote rpull, nerdctl)", () => {
    expect(
      layerSourceFromLabels({
        "containerd.io/snapshot.ref": d("a"),
        "containerd.io/snapshot/remote/stargz.reference": "127.0.0.1:5000/app:1",
        "containerd.io/snapshot/remote/stargz.digest": d("b"),
        "containerd.io/snapshot/remote/stargz.layers": `${d("b")},${d("c")}`,
        "containerd.io/snapshot/remote/urls": "https://mirror/x",
        "containerd.io/snapshot/stargz/toc.digest": d("e"),
      }),
    ).toEqual({
      kind: "source",
      source: { style: "stargz", imageRef: "127.0.0.1:5000/app:1", layerDigest: d("b"), imageLayers: [d("b"), d("c")], urls: ["https://mirror/x"], tocDigest: d("e") },
    });
  });

  it("reads the CRI label set", () => {
    expect(
      layerSourceFromLabels({
        "containerd.io/snapshot/cri.image-ref": "registry/app:1",
        "containerd.io/snapshot/cri.layer-digest": d("b"),
        "containerd.io/snapshot/cri.manifest-digest": d("f"),
        "containerd.io/snapshot/cri.image-layers": `${d("b")},${d("c")},sha256:trunc`,
      }),
    ).toEqual({
      kind: "source",
      source: { style: "cri", imageRef: "registry/app:1", layerDigest: d("b"), imageLayers: [d("b"), d("c")], manifestDigest: d("f"), urls: [] },
    });
  });

  it("explains unusable labels so the caller can fall back to a normal pull", () => {
    expect(layerSourceFromLabels({ "containerd.io/snapshot/remote/stargz.digest": d("b") })).toEqual({
      kind: "invalid",
      reason: "label containerd.io/snapshot/remote/stargz.reference is missing or empty",
    });
    expect(layerSourceFromLabels({ "containerd.io/snapshot/cri.image-ref": "r", "containerd.io/snapshot/cri.layer-digest": "md5:x" })).toEqual({
      kind: "invalid",
      reason: 'label containerd.io/snapshot/cri.layer-digest is "md5:x", not a sha256 digest',
    });
  });
});
