// What a layer format reads its compressed bytes from, and what fetches them:
// the registry, a peer, or the node-local cache in front of either.

/** `length` bytes of a blob from `offset`. */
export interface BlobRange {
  offset: number;
  length: number;
}

/** Range reads of one compressed layer blob (registry, peer, or cache). */
export interface BlobSource {
  /** Total blob size in bytes. */
  readonly size: number;
  /** Bytes [offset, offset+length) of the blob; may return fewer only at the end. */
  read(offset: number, length: number): Promise<Buffer>;
  /**
   * Several disjoint ranges at once, most useful first: one promise per
   * range, each settling as soon as its bytes are here (the origin may send
   * them all in one multi-range request). Absent: one `read` per range.
   */
  readRanges?(ranges: readonly BlobRange[]): Promise<Buffer>[];
  /** Whether readRanges would send several ranges in one request now (else it reads them one by one). */
  takesSeveralRanges?(): boolean;
  /** Told of bytes [offset, offset+data.length) once they matched their digest, so they can be kept. */
  verified?(offset: number, data: Buffer): void;
  /**
   * Told that bytes [offset, offset+length) it returned failed their check.
   * True if reading them again may bring other bytes (they came from the
   * cache or a peer, now dropped or set aside): the reader tries once more.
   */
  rejected?(offset: number, length: number): Promise<boolean>;
}

/** Fetches bytes [offset, offset+length) of one layer blob from outside the cache. */
export type RangeFetcher = (offset: number, length: number) => Promise<Buffer>;

/** Where bytes missing from the cache come from (peers, then the registry), and who is told when they were bad. */
export interface RangeOrigin {
  fetch: RangeFetcher;
  /** As BlobSource.readRanges: several ranges in one request where the origin takes that. */
  fetchRanges?(ranges: readonly BlobRange[]): Promise<Buffer>[];
  /** Whether fetchRanges sends several ranges in one request now. */
  takesSeveralRanges?(): boolean;
  /** As BlobSource.rejected, for bytes this origin fetched. */
  rejected?(offset: number, length: number): boolean | Promise<boolean>;
  /** From now on, bytes only from the registry (the layer's index came from a peer). */
  registryOnly?(): void;
}
