// `augur cache sync --from PEER IMAGE...`: copies what a peer's cache holds of
// the layers named into this node's cache, within its bound. A whole blob is
// checked against its digest before it is kept. Chunks cannot be checked
// without the layer's index or TOC: they are kept as the peer sent them and,
// like every cached byte, checked when first read against an index or TOC this
// node trusts (one that fails is dropped and fetched again, cached-blob.ts; a
// layer read under a peer's index never reads chunks), so a lying peer costs a
// fetch, never data.
import type { LayerCache } from "../cache/layer-cache.js";
import { errorMessage } from "../errdefs/errors.js";
import { Peers } from "./peers.js";

/** What sync did for one layer. */
export interface SyncedLayer {
  digest: string;
  /** "blob": copied whole; "chunks": the ranges the peer had; "held": already here; "absent": the peer has none; "skipped": over the bound; "failed". */
  result: "blob" | "chunks" | "held" | "absent" | "skipped" | "failed";
  bytes: number;
  error?: string;
}

/** Bytes of one chunk request at most (ranges the peer holds are split). */
const MAX_REQUEST = 8 << 20;

export async function syncFromPeer(cache: LayerCache, peer: string, repository: string, layers: readonly { digest: string; size: number }[]): Promise<SyncedLayer[]> {
  const out: SyncedLayer[] = [];
  let copied = 0;
  for (const { digest, size } of layers) {
    if (await cache.blobPath(digest)) {
      out.push({ digest, result: "held", bytes: 0 });
      continue;
    }
    // a client per layer: one layer's failure sets the peer aside for that layer only
    const peers = new Peers([peer], { timeoutMs: 30_000 });
    try {
      try {
        const held = await peers.heldRanges(peers.urls[0] as string, digest);
        // what the peer says it holds, within the layer
        const ranges = held.ranges.map(([s, e]): [number, number] => [s, Math.min(e, size)]).filter(([s, e]) => e > s);
        const whole = held.size === size;
        const want = whole ? size : ranges.reduce((n, [s, e]) => n + e - s, 0);
        if (want === 0) {
          out.push({ digest, result: "absent", bytes: 0 });
          continue;
        }
        // within the bound: what this sync copies must not push out what it copied before
        if (copied + want > cache.maxBytes) {
          out.push({ digest, result: "skipped", bytes: 0, error: `${want} more bytes would exceed the cache's ${cache.maxBytes}` });
          continue;
        }
        const bytes = whole ? await copyBlob(cache, peers, repository, digest, size) : await copyRanges(cache, peers, repository, digest, ranges);
        copied += bytes;
        out.push({ digest, result: whole ? "blob" : "chunks", bytes });
      } catch (err) {
        out.push({ digest, result: "failed", bytes: 0, error: errorMessage(err) });
      }
    } finally {
      await peers.close();
    }
  }
  return out;
}

async function copyBlob(cache: LayerCache, peers: Peers, repository: string, digest: string, size: number): Promise<number> {
  // at most `size` bytes, and they must match the digest: nothing else is committed
  const got = await peers.blobStream(repository, digest, size);
  if (!got) throw new Error("the peer no longer has it");
  try {
    return await cache.storeBlob(digest, got.body as AsyncIterable<Buffer>, size);
  } catch (err) {
    got.body.destroy();
    throw err;
  }
}

async function copyRanges(cache: LayerCache, peers: Peers, repository: string, digest: string, ranges: readonly [number, number][]): Promise<number> {
  let bytes = 0;
  for (const [start, end] of ranges) {
    for (let at = start; at < end; at += MAX_REQUEST) {
      const len = Math.min(MAX_REQUEST, end - at);
      const got = await peers.fetchRange(repository, digest, at, len);
      if (!got) throw new Error(`the peer no longer has bytes ${at}-${at + len}`);
      await cache.storeRange(digest, at, got.data);
      bytes += got.data.length;
    }
  }
  return bytes;
}
