// Labels a pull sets, as containerd's client and stargz-snapshotter's rpull set them:
//  - GC references from a parent blob to its children (images.ChildGCLabels),
//  - the distribution source of every blob (docker.AppendDistributionSourceLabel),
//  - the remote-snapshot labels on each layer's Prepare
//    (source.AppendDefaultLabelsHandlerWrapper, then snapshots.FilterInheritedLabels).
import type { Descriptor } from "../registry/manifest.js";
import type { ImageReference } from "../registry/reference.js";
import {
  REMOTE_URLS_LABEL, STARGZ_DIGEST_LABEL, STARGZ_LAYERS_LABEL, STARGZ_REFERENCE_LABEL, TARGET_SNAPSHOT_LABEL,
} from "../source/labels.js";

/** containerd's limit on one label: key and value together. */
export const MAX_LABEL_BYTES = 4096;
/** Labels a layer descriptor passes on to its snapshot (snapshots.FilterInheritedLabels). */
const INHERITED_PREFIX = "containerd.io/snapshot/";
/** Per-neighbour URLs, `…/urls.<i>` (stargz-snapshotter's targetImageURLsLabelPrefix). */
const REMOTE_URLS_PREFIX = `${REMOTE_URLS_LABEL}.`;

const CONFIG_TYPES = new Set([
  "application/vnd.docker.container.image.v1+json",
  "application/vnd.oci.image.config.v1+json",
  "application/vnd.containerd.container.checkpoint.config.v1+proto",
  "application/vnd.containerd.container.criu.checkpoint.criu.tar",
]);
const MANIFEST_TYPES = new Set(["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"]);
const DOCKER_LAYER_TYPES = new Set([
  "application/vnd.docker.image.rootfs.diff.tar",
  "application/vnd.docker.image.rootfs.diff.tar.gzip",
  "application/vnd.docker.image.rootfs.foreign.diff.tar",
  "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
]);

/** containerd's images.IsLayerType. */
export function isLayerType(mediaType: string): boolean {
  return mediaType.startsWith("application/vnd.oci.image.layer.") || DOCKER_LAYER_TYPES.has(mediaType.split("+")[0] ?? "");
}

/**
 * The GC labels a parent blob carries for its children (images.SetChildrenLabels):
 * `containerd.io/gc.ref.content.config`, `.m.<i>`, `.l.<i>`, `.<i>`, numbered per prefix.
 */
export function childGcLabels(children: readonly Descriptor[]): Record<string, string> {
  const labels: Record<string, string> = {};
  const counts = new Map<string, number>();
  for (const child of children) {
    const prefix = CONFIG_TYPES.has(child.mediaType)
      ? "containerd.io/gc.ref.content.config"
      : MANIFEST_TYPES.has(child.mediaType)
        ? "containerd.io/gc.ref.content.m."
        : isLayerType(child.mediaType) ? "containerd.io/gc.ref.content.l." : "containerd.io/gc.ref.content.";
    const n = counts.get(prefix) ?? 0;
    counts.set(prefix, n + 1);
    labels[n > 0 || prefix.endsWith(".") ? `${prefix}${n}` : prefix] = child.digest;
  }
  return labels;
}

/** `containerd.io/distribution.source.<host>` = repositories, comma separated, `repository` added once. */
export function distributionSourceLabel(reference: ImageReference, existing: Record<string, string> = {}): Record<string, string> {
  const key = `containerd.io/distribution.source.${reference.host}`;
  const repos = (existing[key] ?? "").split(",").filter(Boolean);
  if (!repos.includes(reference.repository)) repos.push(reference.repository);
  return { [key]: repos.join(",") };
}

/** Joins `values` with commas, as many as fit in one label under `key` (stargz-snapshotter's appendWithValidation). */
export function joinWithinLimit(key: string, values: readonly string[]): string {
  let joined = "";
  for (const v of values) {
    const next = joined ? `${joined},${v}` : v;
    if (Buffer.byteLength(key) + Buffer.byteLength(next) > MAX_LABEL_BYTES) break;
    joined = next;
  }
  return joined;
}

/**
 * The labels of the Prepare that unpacks `layers[index]` as `chainId`: the
 * layer's own `containerd.io/snapshot/` annotations (e.g. the eStargz TOC
 * digest), `containerd.io/snapshot.ref`, and stargz-snapshotter's remote labels:
 * image reference, layer digest, the digests of this and the following layers
 * (cut to fit the label limit) and any URLs.
 */
export function prepareLabels(imageRef: string, layers: readonly Descriptor[], index: number, chainId: string): Record<string, string> {
  const layer = layers[index];
  if (!layer) throw new RangeError(`no layer ${index}`);
  const labels: Record<string, string> = {};
  for (const [k, v] of Object.entries(layer.annotations ?? {})) if (k.startsWith(INHERITED_PREFIX)) labels[k] = v;
  labels[STARGZ_REFERENCE_LABEL] = imageRef;
  labels[STARGZ_DIGEST_LABEL] = layer.digest;
  const following = layers.slice(index).filter((l) => isLayerType(l.mediaType));
  labels[STARGZ_LAYERS_LABEL] = joinWithinLimit(STARGZ_LAYERS_LABEL, following.map((l) => l.digest));
  if (layer.urls?.length) labels[REMOTE_URLS_LABEL] = joinWithinLimit(REMOTE_URLS_LABEL, layer.urls);
  following.forEach((l, i) => {
    if (i > 0 && l.urls?.length) labels[`${REMOTE_URLS_PREFIX}${i}`] = joinWithinLimit(`${REMOTE_URLS_PREFIX}${i}`, l.urls);
  });
  labels[TARGET_SNAPSHOT_LABEL] = chainId;
  return labels;
}
