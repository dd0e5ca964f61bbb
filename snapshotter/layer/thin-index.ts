// The index a node publishes for others (augur manifest push). Its gzip
// windows (32 KiB each, a few thousand of them for the python image) are most
// of its bytes, and a node that never saw the image fetches the whole index
// before its first data request: 14.3 MB of indexes for python3's 12 MB of
// start-up reads (docs/benchmarks.md). A thin index keeps the access points
// the traced start-ups decode from and one every THIN_GAP of the rest. A node
// that fetched it unpinned serves its containers from it until it has checked
// it against the whole blob, then from the full index it built doing so
// (remote-layers.ts); a pinned one stays thin on that node. The windows it
// keeps hold only the bytes the stream after each point refers back to
// (window-trim.ts).
import type { Readable } from "node:stream";
import { InvalidArgumentError } from "../errdefs/errors.js";
import { streamOffsets, thinPoints, type ReadStart } from "./access-points.js";
import { parseTarIndex, serializeTarIndex } from "./tar-index-codec.js";
import { buildTarIndex } from "./tar-index.js";
import { trimWindows } from "./window-trim.js";

/** Uncompressed bytes between the points kept where no traced read begins: a read nobody predicted decodes up to this much before it. */
export const THIN_GAP = 4 << 20;

export interface ThinIndex {
  bytes: Buffer;
  /** Access points kept, and in the index it was made from. */
  spans: number;
  spansBefore: number;
  /** Windows trimmed, of those kept. */
  trimmed: number;
}

/**
 * A thin copy of the serialised gzip index `bytes`, rebuilt from the layer's
 * blob (`blob` opens it from the start) with the points `reads` decode from,
 * their windows trimmed; undefined when it would not be smaller (not gzip, or
 * nothing to drop). The copy is checked against the original (entries, diff
 * ID) like any rebuild.
 */
export async function thinIndex(bytes: Buffer, blob: () => Readable, reads: readonly ReadStart[], gap = THIN_GAP): Promise<ThinIndex | undefined> {
  const index = parseTarIndex(bytes);
  if (index.compression !== "gzip") return undefined;
  const existing = index.spans.map((s) => s.out);
  const kept = thinPoints(existing, streamOffsets(index, reads), gap);
  const thin = await buildTarIndex(blob(), { digest: index.digest, mediaType: index.mediaType, spanSize: index.spanSize, accessAt: kept });
  if (thin.entries.length !== index.entries.length || thin.diffId !== index.diffId) {
    throw new InvalidArgumentError(`layer ${index.digest}: the thin index differs from the full one (${thin.entries.length} entries, ${index.entries.length} in the full one)`);
  }
  const windows = await trimWindows(thin.spans, blob());
  const spans = thin.spans.map((s) => ({ ...s, window: windows.get(s) ?? s.window }));
  const out = serializeTarIndex({ ...thin, spans }).bytes;
  if (out.length >= bytes.length) return undefined;
  return { bytes: out, spans: spans.length, spansBefore: existing.length, trimmed: windows.size };
}
