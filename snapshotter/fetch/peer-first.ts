// Where a layer's missing bytes come from when peers are configured: the
// first peer that has them, else the registry. Bytes a peer sent that fail
// their check set that peer aside, and the read is tried again (registry).
import type { Peers } from "../peer/peers.js";
import type { RangeFetcher, RangeOrigin } from "./blob-source.js";

/** Reads remembered by the peer that answered them, to blame it if they fail their check. */
const REMEMBERED = 256;

export function peerFirst(peers: Peers, repository: string, digest: string, registry: RangeFetcher): RangeOrigin {
  const answeredBy = new Map<string, string>();
  return {
    fetch: async (offset, length) => {
      const got = await peers.fetchRange(repository, digest, offset, length);
      if (!got) return registry(offset, length);
      const key = `${offset}:${length}`;
      answeredBy.delete(key);
      answeredBy.set(key, got.peer);
      if (answeredBy.size > REMEMBERED) answeredBy.delete(answeredBy.keys().next().value as string);
      return got.data;
    },
    rejected: (offset, length) => {
      const key = `${offset}:${length}`;
      const peer = answeredBy.get(key);
      if (!peer) return false;
      answeredBy.delete(key);
      peers.distrust(peer, `sent bytes of ${digest} [${offset}, ${offset + length}) that failed their check`);
      return true;
    },
  };
}
