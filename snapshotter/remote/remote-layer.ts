// What augur needs to serve one layer lazily, worked out from the labels
// containerd passed to Prepare and the image manifest in the registry. Stored
// beside the snapshot (`remote.json`) so a restarted augur can mount it again.
import { FailedPreconditionError, InvalidArgumentError } from "../errdefs/errors.js";
import { compressionOf } from "../layer/decoders.js";
import { TOC_DIGEST_ANNOTATION } from "../layer/estargz-toc.js";
import type { ResolvedImage } from "../registry/registry-client.js";
import type { LayerSource } from "../source/labels.js";

export interface RemoteLayerSpec {
  /** Image reference the layer is fetched through (its repository). */
  imageRef: string;
  layerDigest: string;
  mediaType: string;
  /** Compressed blob size from the manifest. */
  size: number;
  /** eStargz TOC digest: present means the layer is served from its TOC. */
  tocDigest?: string;
}

export function specFor(source: LayerSource, image: ResolvedImage): RemoteLayerSpec {
  const desc = image.layers.find((l) => l.digest === source.layerDigest);
  if (!desc) {
    throw new FailedPreconditionError(`layer ${source.layerDigest} is not in image ${source.imageRef} (manifest ${image.digest})`);
  }
  compressionOf(desc.mediaType); // throws InvalidArgumentError for a media type augur cannot read
  const tocDigest = source.tocDigest ?? desc.annotations?.[TOC_DIGEST_ANNOTATION];
  if (tocDigest && compressionOf(desc.mediaType) !== "gzip") {
    throw new InvalidArgumentError(`layer ${desc.digest}: a TOC digest on a ${desc.mediaType} layer is not eStargz`);
  }
  return {
    imageRef: source.imageRef, layerDigest: desc.digest, mediaType: desc.mediaType, size: desc.size,
    ...(tocDigest ? { tocDigest } : {}),
  };
}

/** Reads a spec written by `JSON.stringify`, checking every field. */
export function parseSpec(text: string, where: string): RemoteLayerSpec {
  const v = JSON.parse(text) as Partial<RemoteLayerSpec>;
  const ok = typeof v.imageRef === "string" && typeof v.layerDigest === "string" && typeof v.mediaType === "string"
    && typeof v.size === "number" && (v.tocDigest === undefined || typeof v.tocDigest === "string");
  if (!ok) throw new InvalidArgumentError(`${where}: not a remote layer description`);
  return v as RemoteLayerSpec;
}
