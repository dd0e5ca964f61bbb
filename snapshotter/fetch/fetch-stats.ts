// What fetching ahead bought, counted where reads meet units (unit-fetcher.ts):
// a read that finds its unit already fetched (or on its way) by a prefetch is
// a hit; one that has to fetch it is a miss. Units fetched ahead that no read
// has asked for yet are unused (wasted, if none ever does). Compressed bytes
// throughout; one instance per augur, shared by every layer.

export class FetchStats {
  /** Compressed bytes of units reads got from a fetch ahead (already there, or in flight). */
  readHitBytes = 0;
  /** Compressed bytes of units reads had to fetch themselves. */
  readMissBytes = 0;
  /** Compressed bytes reads found fetched by an earlier read (in memory). */
  readAgainBytes = 0;
  /** Compressed bytes fetched ahead, by why. */
  aheadBytes = { soon: 0, later: 0, speculative: 0 };
  /** Of those, bytes a read has used since. */
  aheadUsedBytes = 0;
  /** The same, by why they were fetched ahead. */
  aheadUsedBy = { soon: 0, later: 0, speculative: 0 };
  /** Fetches reads waited for. */
  missFetches = 0;

  /** Share of read bytes that were fetched ahead (1 when nothing was read). */
  get recall(): number {
    const total = this.readHitBytes + this.readMissBytes;
    return total === 0 ? 1 : this.readHitBytes / total;
  }

  /** Share of bytes fetched ahead that reads used so far (1 when nothing was fetched ahead). */
  get precision(): number {
    const ahead = this.aheadBytes.soon + this.aheadBytes.later + this.aheadBytes.speculative;
    return ahead === 0 ? 1 : this.aheadUsedBytes / ahead;
  }
}
