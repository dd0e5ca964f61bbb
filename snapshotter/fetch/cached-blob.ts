// A layer blob read through the node-local cache: ranges the cache holds are
// read from disk, others are fetched (registry, mirror or peer) and, once the
// layer index has verified them, kept for the next reader.
import type { BlobSource, RangeFetcher } from "./blob-source.js";
import { logger } from "../util/logging.js";
import { errorMessage } from "../errdefs/errors.js";
import type { LayerCache } from "../cache/layer-cache.js";

const log = logger("fetch");

export class CachedBlob implements BlobSource {
  /** Compressed bytes fetched from outside the cache. */
  fetchedBytes = 0;

  constructor(
    readonly cache: LayerCache,
    readonly digest: string,
    readonly size: number,
    readonly fetch: RangeFetcher,
  ) {}

  async read(offset: number, length: number): Promise<Buffer> {
    const len = Math.max(0, Math.min(length, this.size - offset));
    const local = await this.cache.readRange(this.digest, offset, len);
    if (local) return local;
    const data = await this.fetch(offset, len);
    this.fetchedBytes += data.length;
    return data;
  }

  verified(offset: number, data: Buffer): void {
    // No copy: readers only slice verified buffers, never write to them.
    this.cache.storeRange(this.digest, offset, data).catch((err: unknown) => {
      log.warn("could not keep verified layer bytes in the cache", { layer: this.digest, offset, error: errorMessage(err) });
    });
  }
}
