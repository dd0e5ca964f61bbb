// Where a registry sent a blob's GET. Most registries answer blob requests
// with a redirect to object storage (Docker Hub, ECR, GCR, Harbor on S3), and
// a lazy pull makes hundreds of Range requests per layer: each one through
// the registry costs a round trip for the redirect and one for the token
// check behind it. The first request's final location is kept, and the
// blob's later Range requests go straight there while it answers (stargz
// does the same); a location that fails (a signed URL that expired, a 403,
// a 404) is dropped and the registry asked again.
// AUGUR_BLOB_LOCATION_TTL_MS sets how long (0: never kept, every Range request
// follows the registry's redirect; the benchmark measures the difference).
export const LOCATION_TTL_MS = Number(process.env.AUGUR_BLOB_LOCATION_TTL_MS ?? 2 * 60_000);

export class BlobLocations {
  readonly #locations = new Map<string, { url: string; until: number }>();
  /** Range requests sent straight to a remembered location, and redirects followed through the registry. */
  readonly counts = { direct: 0, redirected: 0 };

  /** The blob's remembered location, if it is still fresh. */
  get(key: string): string | undefined {
    const l = this.#locations.get(key);
    if (!l) return undefined;
    if (Date.now() < l.until) return l.url;
    this.#locations.delete(key);
    return undefined;
  }

  /** After a request to `requested` was answered at `answered`: remembered when it was a redirect. */
  remember(key: string, requested: string, answered: string): void {
    if (answered === requested) return;
    this.counts.redirected++;
    if (!(LOCATION_TTL_MS > 0)) return;
    this.#locations.set(key, { url: answered, until: Date.now() + LOCATION_TTL_MS });
    if (this.#locations.size > 4096) this.#locations.delete(this.#locations.keys().next().value as string);
  }

  forget(key: string): void {
    this.#locations.delete(key);
  }
}
