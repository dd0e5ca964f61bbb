// Chain IDs name the snapshot of a layer applied on top of its parents
// (image-spec identity.ChainIDs): chain[0] = diff[0],
// chain[i] = sha256(chain[i-1] + " " + diff[i]).
import { sha256Digest } from "../util/digest.js";

/** The chain ID of each prefix of `diffIds`, in order. */
export function chainIds(diffIds: readonly string[]): string[] {
  const out: string[] = [];
  for (const diffId of diffIds) {
    const parent = out[out.length - 1];
    out.push(parent === undefined ? diffId : sha256Digest(`${parent} ${diffId}`));
  }
  return out;
}
