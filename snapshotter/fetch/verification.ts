// Every byte handed to a container is checked against a digest first. A unit
// that fails its check is never served: the read fails with EIO and the
// error names the layer (fuse/errno.ts).
import { InternalError } from "../errdefs/errors.js";

/** Bytes of a layer did not match their digest; the layer must not be served (EIO). */
export class LayerVerificationError extends InternalError {
  constructor(
    readonly layerDigest: string,
    detail: string,
  ) {
    super(`layer ${layerDigest}: verification failed: ${detail}`);
  }
}

/**
 * Item `k` of a batched fetch whose items are verified one by one: a bad item
 * rejects alone, so bytes read ahead can never spoil a good read.
 */
export async function verifiedItem(batch: Promise<readonly (Buffer | LayerVerificationError)[]>, k: number): Promise<Buffer> {
  const item = (await batch)[k] as Buffer | LayerVerificationError;
  if (item instanceof LayerVerificationError) throw item;
  return item;
}

/**
 * A layer index made elsewhere (from the registry) says something of an
 * entry that the layer's own tar headers do not: the index lied or is broken.
 * Nothing it said of that entry was served; the layer is read without it.
 */
export class IndexMismatchError extends LayerVerificationError {}
