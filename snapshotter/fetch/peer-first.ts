// Where a layer's missing bytes come from when peers are configured: the
// first peer that has them, else the registry. Bytes a peer sent that fail
// their check set that peer aside, and the read is tried again at the
// registry. A layer whose index came from a peer takes its bytes from the
// registry only: the peer that wrote the digests must not also send the bytes.
import type { Peers } from "../peer/peers.js";
import type { BlobRange, RangeFetcher, RangeOrigin } from "./blob-source.js";
import { RecentReads } from "./recent-reads.js";

export function peerFirst(
  peers: Peers, repository: string, digest: string, registry: RangeFetcher,
  registryRanges?: (ranges: readonly BlobRange[]) => Promise<Buffer>[],
  registryTakesSeveral: () => boolean = () => true,
): RangeOrigin {
  const answeredBy = new RecentReads<string>();
  /** Reads to send to the registry next: their peer's bytes failed. */
  const retry = new RecentReads<true>();
  let registryOnly = false;
  const fetch = async (offset: number, length: number): Promise<Buffer> => {
    answeredBy.delete(offset, length);
    if (registryOnly || retry.take(offset, length)) return registry(offset, length);
    const got = await peers.fetchRange(repository, digest, offset, length);
    if (!got) return registry(offset, length);
    answeredBy.set(offset, length, got.peer);
    return got.data;
  };
  return {
    fetch,
    // peers are asked range by range (they are near); the registry takes several at once
    ...(registryRanges ? {
      fetchRanges: (ranges: readonly BlobRange[]) => (registryOnly ? registryRanges(ranges) : ranges.map((r) => fetch(r.offset, r.length))),
      takesSeveralRanges: () => registryOnly && registryTakesSeveral(),
    } : {}),
    rejected: (offset, length) => {
      const peer = answeredBy.take(offset, length);
      if (!peer) return false;
      peers.distrust(peer, `sent bytes of ${digest} [${offset}, ${offset + length}) that failed their check`);
      retry.set(offset, length, true);
      return true;
    },
    registryOnly: () => {
      registryOnly = true;
    },
  };
}
