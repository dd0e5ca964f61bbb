// Where a layer comes from, read from the labels containerd passes to Prepare
// when a client asks for a remote (lazily pulled) snapshot. Two label sets are
// in use (stargz-snapshotter fs/source/source.go, containerd CRI):
//  - stargz style, set by `ctr-remote images rpull` and nerdctl;
//  - CRI style, set by CRI with disable_snapshot_annotations=false and by
//    `ctr-remote rpull --use-containerd-labels`.
// The stargz set is tried first, then CRI's, as stargz-snapshotter does.
import type { Labels } from "../snapshots/snapshotter.js";

/** containerd sets this on every layer Prepare during unpack: the chain ID the layer will be committed as. */
export const TARGET_SNAPSHOT_LABEL = "containerd.io/snapshot.ref";

/** stargz style: image reference. */
export const STARGZ_REFERENCE_LABEL = "containerd.io/snapshot/remote/stargz.reference";
/** stargz style: this layer's digest. */
export const STARGZ_DIGEST_LABEL = "containerd.io/snapshot/remote/stargz.digest";
/** stargz style: comma-separated digests of the image's layers (truncated to fit 4096 bytes). */
export const STARGZ_LAYERS_LABEL = "containerd.io/snapshot/remote/stargz.layers";
/** stargz style: comma-separated URLs the layer may be fetched from. */
export const REMOTE_URLS_LABEL = "containerd.io/snapshot/remote/urls";

/** CRI style: image reference, layer digest, manifest digest, image layers. */
export const CRI_IMAGE_REF_LABEL = "containerd.io/snapshot/cri.image-ref";
export const CRI_LAYER_DIGEST_LABEL = "containerd.io/snapshot/cri.layer-digest";
export const CRI_MANIFEST_DIGEST_LABEL = "containerd.io/snapshot/cri.manifest-digest";
export const CRI_IMAGE_LAYERS_LABEL = "containerd.io/snapshot/cri.image-layers";

/** eStargz layers carry their TOC digest as a descriptor annotation, passed through as a label. */
export const TOC_DIGEST_LABEL = "containerd.io/snapshot/stargz/toc.digest";

export interface LayerSource {
  style: "stargz" | "cri";
  imageRef: string;
  layerDigest: string;
  /** The image's layer digests in order; may be cut short by the label size limit. */
  imageLayers: string[];
  manifestDigest?: string;
  urls: string[];
  tocDigest?: string;
}

export type LayerSourceResult =
  | { kind: "none" }
  | { kind: "source"; source: LayerSource }
  /** Labels ask for a remote layer but are unusable; the caller falls back to a normal unpack. */
  | { kind: "invalid"; reason: string };

const DIGEST = /^sha256:[0-9a-f]{64}$/;

const list = (v: string | undefined): string[] => (v ? v.split(",").map((s) => s.trim()).filter(Boolean) : []);

export function layerSourceFromLabels(labels: Labels): LayerSourceResult {
  const stargz = labels[STARGZ_REFERENCE_LABEL] !== undefined || labels[STARGZ_DIGEST_LABEL] !== undefined;
  const cri = labels[CRI_IMAGE_REF_LABEL] !== undefined || labels[CRI_LAYER_DIGEST_LABEL] !== undefined;
  if (!stargz && !cri) return { kind: "none" };
  const style = stargz ? "stargz" : "cri";
  const imageRef = stargz ? labels[STARGZ_REFERENCE_LABEL] : labels[CRI_IMAGE_REF_LABEL];
  const layerDigest = stargz ? labels[STARGZ_DIGEST_LABEL] : labels[CRI_LAYER_DIGEST_LABEL];
  const refLabel = stargz ? STARGZ_REFERENCE_LABEL : CRI_IMAGE_REF_LABEL;
  const digestLabel = stargz ? STARGZ_DIGEST_LABEL : CRI_LAYER_DIGEST_LABEL;
  if (!imageRef) return { kind: "invalid", reason: `label ${refLabel} is missing or empty` };
  if (!layerDigest || !DIGEST.test(layerDigest)) {
    return { kind: "invalid", reason: `label ${digestLabel} is ${layerDigest ? JSON.stringify(layerDigest) + ", not a sha256 digest" : "missing"}` };
  }
  const manifestDigest = labels[CRI_MANIFEST_DIGEST_LABEL];
  const tocDigest = labels[TOC_DIGEST_LABEL];
  return {
    kind: "source",
    source: {
      style,
      imageRef,
      layerDigest,
      imageLayers: list(stargz ? labels[STARGZ_LAYERS_LABEL] : labels[CRI_IMAGE_LAYERS_LABEL]).filter((d) => DIGEST.test(d)),
      ...(manifestDigest && DIGEST.test(manifestDigest) ? { manifestDigest } : {}),
      urls: list(labels[REMOTE_URLS_LABEL]),
      ...(tocDigest && DIGEST.test(tocDigest) ? { tocDigest } : {}),
    },
  };
}
