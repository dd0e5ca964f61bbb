// What a layer format reads its compressed bytes from, and what fetches them:
// the registry, a peer, or the node-local cache in front of either.

/** Range reads of one compressed layer blob (registry, peer, or cache). */
export interface BlobSource {
  /** Total blob size in bytes. */
  readonly size: number;
  /** Bytes [offset, offset+length) of the blob; may return fewer only at the end. */
  read(offset: number, length: number): Promise<Buffer>;
  /** Told of bytes [offset, offset+data.length) once they matched their digest, so they can be kept. */
  verified?(offset: number, data: Buffer): void;
}

/** Fetches bytes [offset, offset+length) of one layer blob from outside the cache. */
export type RangeFetcher = (offset: number, length: number) => Promise<Buffer>;
