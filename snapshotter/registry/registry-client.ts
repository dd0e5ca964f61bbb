// The OCI distribution client augur's lazy layers use: resolve an image
// reference to its platform manifest, fetch blobs whole or by byte range
// (several ranges in one request where the server takes that: multi-range.ts),
// stream a layer from an offset. Hosts come from containerd's hosts.toml
// (mirrors first), credentials from a docker config.json.
import { pipeline, type Readable } from "node:stream";
import pLimit from "p-limit";
import { FailedPreconditionError, InvalidArgumentError, NotFoundError, UnavailableError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { Authorizer, pullScope, pushScope } from "./authorizer.js";
import { BlobLocations } from "./blob-locations.js";
import { SkipBytes, bytesToSkip, rangeHeader, validateRange, type ByteRange } from "./blob-range.js";
import { multiRangeHeader } from "./byteranges.js";
import { loadDockerCredentials, type CredentialStore } from "./credentials.js";
import { DigestVerifier, sha256Digest, verifyDigest } from "./digest.js";
import { DEFAULT_HOSTS_DIR, loadHosts, type HostCapability, type RegistryEndpoint } from "./hosts.js";
import { DEFAULT_RETRIES, HttpTransport, errorDetail, readBody, type HttpResponse, type TransportOptions } from "./http-transport.js";
import { MANIFEST_ACCEPT, parseManifest, parsePlatform, selectManifest, type Descriptor, type ImageManifest, type Platform } from "./manifest.js";
import { MAX_RANGES_PER_REQUEST, MULTI_RANGE_STATUSES, MultiRangeSupport, WantedRange, receiveRanges, validateRanges, type RangesOutcome } from "./multi-range.js";
import { resumingStream } from "./resuming-stream.js";
import { formatReference, toReference, validateDigest, type ImageReference } from "./reference.js";
import { parseWwwAuthenticate, type Challenge } from "./www-authenticate.js";

export type { ByteRange } from "./blob-range.js";

const log = logger("registry");
/** containerd refuses manifests larger than this too. */
const MAX_MANIFEST_BYTES = 4 << 20;
/** Ranges of one multi-range call fetched at once when the server took them one by one. */
const FALLBACK_CONCURRENCY = 4;

export interface RegistryClientOptions extends TransportOptions {
  /** Directory of `<host>/hosts.toml` files. Default /etc/containerd/certs.d. */
  hostsDir?: string;
  /** Where credentials come from. Default: the docker config at `dockerConfig`. */
  credentials?: CredentialStore;
  /** Path of a docker config.json. Default `$DOCKER_CONFIG/config.json` or `~/.docker/config.json`. */
  dockerConfig?: string;
  /** Speak plain HTTP to every host, whatever hosts.toml or the host name says (`--plain-http`). */
  plainHttp?: boolean;
}

/** What an image reference resolved to, for one platform. */
export interface ResolvedImage {
  reference: ImageReference;
  /** Digest of the platform's image manifest. */
  digest: string;
  /** Digest the reference itself points at: the index for multi-platform images, else `digest`. */
  rootDigest: string;
  /** The image index the reference points at, with its exact bytes; absent when it points at a manifest. */
  index?: { mediaType: string; bytes: Buffer; manifests: Descriptor[] };
  manifest: ImageManifest;
  /** The exact manifest bytes `digest` was verified against. */
  manifestBytes: Buffer;
  config: Descriptor;
  layers: Descriptor[];
}

interface FetchedManifest {
  digest: string;
  bytes: Buffer;
  contentType: string | undefined;
}

const UNAUTHORIZED = Symbol("unauthorized");

export class RegistryClient {
  readonly #transport: HttpTransport;
  readonly #authorizer: Promise<Authorizer>;
  readonly #hostsDir: string;
  readonly #endpoints = new Map<string, Promise<RegistryEndpoint[]>>();
  readonly #resumes: number;
  readonly #plainHttp: boolean;
  readonly #locations = new BlobLocations();
  readonly #multiRange = new MultiRangeSupport();
  /** Hosts that answered a multi-range request with one part or the whole blob (for takesSeveralRanges). */
  readonly #singleRangeHosts = new Set<string>();

  constructor(options: RegistryClientOptions = {}) {
    this.#transport = new HttpTransport(options);
    this.#hostsDir = options.hostsDir ?? DEFAULT_HOSTS_DIR;
    this.#resumes = options.retries ?? DEFAULT_RETRIES;
    this.#plainHttp = options.plainHttp ?? false;
    const credentials = options.credentials ? Promise.resolve(options.credentials) : loadDockerCredentials(options.dockerConfig);
    this.#authorizer = credentials.then((c) => new Authorizer(this.#transport, c));
    this.#authorizer.catch(() => undefined);
  }

  /** Resolves `ref` to the image manifest for `platform` (default linux/amd64), following indexes. */
  async resolve(ref: string | ImageReference, platform: Platform | string = "linux/amd64"): Promise<ResolvedImage> {
    const reference = toReference(ref);
    const wanted = typeof platform === "string" ? parsePlatform(platform) : platform;
    const name = formatReference(reference);
    const capability: HostCapability = reference.digest ? "pull" : "resolve";
    const root = await this.#fetchManifest(reference, reference.digest ?? reference.tag ?? "latest", capability);
    let fetched = root;
    let parsed = parseManifest(root.bytes, root.contentType, `manifest ${name}`);
    let index: ResolvedImage["index"];
    if (parsed.kind === "index") {
      index = { mediaType: parsed.index.mediaType, bytes: root.bytes, manifests: parsed.index.manifests };
      const chosen = selectManifest(parsed.index, wanted, `image index ${name}@${root.digest}`);
      fetched = await this.#fetchManifest(reference, chosen.digest, "pull");
      parsed = parseManifest(fetched.bytes, fetched.contentType, `manifest ${name}@${chosen.digest}`);
      if (parsed.kind === "index") throw new FailedPreconditionError(`manifest ${name}@${chosen.digest}: nested image index is not supported`);
    }
    const { manifest } = parsed;
    log.debug("resolved image", { ref: name, digest: fetched.digest, layers: manifest.layers.length });
    return {
      reference, digest: fetched.digest, rootDigest: root.digest, ...(index ? { index } : {}),
      manifest, manifestBytes: fetched.bytes, config: manifest.config, layers: manifest.layers,
    };
  }

  /** The whole blob, verified against `digest`, or `range` of it (verified by the caller). */
  async fetchBlob(ref: string | ImageReference, digest: string, range?: ByteRange): Promise<Buffer> {
    const reference = toReference(ref);
    validateDigest(digest);
    if (range) {
      validateRange(range);
      if (range.length === 0) return Buffer.alloc(0);
    }
    const headers: Record<string, string> = range ? { range: rangeHeader(range.offset, range.length) } : {};
    return this.#withEndpoints(reference, "pull", async (endpoint) => {
      const what = blobWhat(endpoint, reference, digest, range);
      const path = `/${reference.repository}/blobs/${digest}`;
      const key = `${endpoint.url}${path}`;
      if (range) {
        const direct = await this.#fromLocation(key, endpoint, range, what);
        if (direct) return direct;
      }
      return this.#request(endpoint, reference, path, { headers }, what, async (res) => {
        await expectStatus(res, range ? [200, 206] : [200], what);
        if (range) {
          this.#locations.remember(key, endpoint.url + path, res.url);
          return readRange(res, range, what);
        }
        const bytes = await readBody(res, Number.POSITIVE_INFINITY, what);
        verifyDigest(bytes, digest, what);
        return bytes;
      });
    });
  }

  /**
   * Several ranges of a blob, unverified (as fetchBlob's), in as few requests
   * as the server allows: one promise per range, in the order given, each
   * resolving as soon as its bytes have arrived. Ranges go most useful first;
   * they must be valid, non-empty and disjoint (else every promise rejects
   * with InvalidArgumentError). Up to MAX_RANGES_PER_REQUEST go in one
   * multi-range request, more in further requests sent at the same time;
   * ranges the answer did not bring are fetched one by one with fetchBlob, and
   * so is every range from a server that does not do multi-range
   * (multi-range.ts). A failure rejects the ranges it kept from arriving and
   * no others. Promises the caller does not await never count as unhandled.
   */
  fetchBlobRanges(ref: string | ImageReference, digest: string, ranges: readonly ByteRange[]): Promise<Buffer>[] {
    const wanted = ranges.map((r) => new WantedRange(r));
    let reference: ImageReference;
    try {
      reference = toReference(ref);
      validateDigest(digest);
      validateRanges(ranges);
    } catch (err) {
      for (const w of wanted) w.reject(err);
      return wanted.map((w) => w.promise);
    }
    if (wanted.length === 1) wanted[0]?.follow(this.fetchBlob(reference, digest, wanted[0].range));
    else {
      for (let i = 0; i < wanted.length; i += MAX_RANGES_PER_REQUEST) {
        const batch = wanted.slice(i, i + MAX_RANGES_PER_REQUEST);
        this.#fetchRanges(reference, digest, batch).catch((err: unknown) => batch.forEach((w) => w.reject(err)));
      }
    }
    return wanted.map((w) => w.promise);
  }

  /** Multi-range requests sent and the ranges they carried; ranges of fetchBlobRanges calls fetched one by one instead. */
  get rangeCounts(): { multiRequests: number; multiRanges: number; singleFallbacks: number } {
    return { ...this.#multiRange.counts };
  }

  /** One multi-range request for `batch` (trying each endpoint), then what it did not bring one by one. */
  async #fetchRanges(reference: ImageReference, digest: string, batch: readonly WantedRange[]): Promise<void> {
    let rest: WantedRange[];
    try {
      rest = await this.#withEndpoints(reference, "pull", (endpoint) => this.#multiRangeAt(endpoint, reference, digest, batch));
    } catch (err) {
      for (const w of batch) w.reject(err);
      return;
    }
    this.#multiRange.counts.singleFallbacks += rest.length;
    // a few at a time: a batch of 64 must not take every request slot from the reads behind it
    const limit = pLimit(FALLBACK_CONCURRENCY);
    for (const w of rest) w.follow(limit(() => this.fetchBlob(reference, digest, w.range)));
  }

  /**
   * False once the host that serves `ref` (or where it redirected blobs to)
   * is known to answer one range a request: callers then need not pack
   * ranges together, they would go one by one anyway.
   */
  takesSeveralRanges(ref: string | ImageReference): boolean {
    return !this.#singleRangeHosts.has(toReference(ref).host);
  }

  /**
   * Asks `endpoint` (or the blob's remembered storage location) for the
   * batch's unsettled ranges in one request; returns those still unsettled
   * after it, all of them when the server is known not to do multi-range.
   */
  async #multiRangeAt(endpoint: RegistryEndpoint, reference: ImageReference, digest: string, batch: readonly WantedRange[]): Promise<WantedRange[]> {
    const open = batch.filter((w) => !w.settled);
    const path = `/${reference.repository}/blobs/${digest}`;
    const key = `${endpoint.url}${path}`;
    const location = this.#locations.get(key);
    if (this.#multiRange.singleRangeOnly(endpoint.url) || (location && this.#multiRange.singleRangeOnly(location))) {
      this.#singleRangeHosts.add(reference.host);
      return open;
    }
    if (open.length < 2) return open;
    const what = `blob ${digest} (${open.length} ranges) of ${reference.repository} at ${endpoint.host}`;
    const headers = { range: multiRangeHeader(open.map((w) => w.range)) };
    const counted = (): void => {
      this.#multiRange.counts.multiRequests++;
      this.#multiRange.counts.multiRanges += open.length;
    };
    const learn = (outcome: RangesOutcome): WantedRange[] => {
      this.#multiRange.learn(outcome, endpoint.url, what);
      if (outcome.answer === "single-range" || outcome.answer === "malformed") this.#singleRangeHosts.add(reference.host);
      return open.filter((w) => !w.settled);
    };
    if (location) {
      counted();
      const outcome = await this.#atLocation(key, endpoint, headers, what, (res) => receiveRanges(res, open));
      if (outcome) return learn(outcome);
    }
    counted();
    return this.#request(endpoint, reference, path, { headers }, what, async (res) => {
      if (!MULTI_RANGE_STATUSES.includes(res.status)) await expectStatus(res, [200, 206], what);
      if (res.status === 200 || res.status === 206) this.#locations.remember(key, endpoint.url + path, res.url);
      return learn(await receiveRanges(res, open));
    });
  }

  /**
   * The blob from `offset` to its end, as a stream. A connection that drops
   * midway is resumed with a Range request. From offset 0 the stream fails at
   * its end unless the bytes match `digest`. The stream holds one of the
   * client's request slots until it ends or is destroyed.
   */
  async blobStream(ref: string | ImageReference, digest: string, offset = 0): Promise<Readable> {
    const reference = toReference(ref);
    validateDigest(digest);
    validateRange({ offset });
    const first = await this.#openBlob(reference, digest, offset);
    const open = async (from: number): Promise<Readable> => (await this.#openBlob(reference, digest, from)).body;
    const joined = resumingStream(first.body, offset, open, this.#resumes, first.what);
    return offset === 0 ? pipeline(joined, new DigestVerifier(digest, first.what), () => undefined) : joined;
  }

  /** The blob's bytes from `offset`, unverified, and what to call them in errors. */
  async #openBlob(reference: ImageReference, digest: string, offset: number): Promise<{ body: Readable; what: string }> {
    return this.#withEndpoints(reference, "pull", (endpoint) => {
      const what = blobWhat(endpoint, reference, digest, offset > 0 ? { offset } : undefined);
      const headers: Record<string, string> = offset > 0 ? { range: rangeHeader(offset) } : {};
      return this.#request(endpoint, reference, `/${reference.repository}/blobs/${digest}`, { headers }, what, async (res) => {
        await expectStatus(res, offset > 0 ? [200, 206] : [200], what);
        const skip = offset > 0 ? bytesToSkip(res.status, res.header("content-range"), offset, what) : 0;
        const body: Readable = skip > 0 ? pipeline(res.body, new SkipBytes(skip), () => undefined) : res.body;
        return { body, what };
      });
    });
  }

  /** Size in bytes of a blob, from a HEAD request. */
  async blobSize(ref: string | ImageReference, digest: string): Promise<number> {
    const reference = toReference(ref);
    validateDigest(digest);
    return this.#withEndpoints(reference, "pull", (endpoint) => {
      const what = blobWhat(endpoint, reference, digest);
      return this.#request(endpoint, reference, `/${reference.repository}/blobs/${digest}`, { method: "HEAD" }, what, async (res) => {
        res.body.resume();
        await expectStatus(res, [200], what);
        const size = Number(res.header("content-length"));
        if (!Number.isSafeInteger(size) || size < 0) throw new FailedPreconditionError(`${what}: HEAD response has no Content-Length`);
        return size;
      });
    });
  }

  // ---- writing: blobs and manifests (augur manifest push) ----

  /** Pushes a blob (skipped when the registry has it): a monolithic upload, POST then PUT. Returns its digest. */
  async pushBlob(ref: string | ImageReference, bytes: Buffer): Promise<string> {
    const reference = toReference(ref);
    const digest = sha256Digest(bytes);
    return this.#withEndpoints(reference, "push", async (endpoint) => {
      const what = blobWhat(endpoint, reference, digest);
      const exists = await this.#request(endpoint, reference, `/${reference.repository}/blobs/${digest}`, { method: "HEAD", push: true }, what, async (res) => {
        res.body.resume();
        return res.status === 200;
      });
      if (exists) return digest;
      const location = await this.#request(endpoint, reference, `/${reference.repository}/blobs/uploads/`, { method: "POST", push: true }, `upload of ${what}`, async (res) => {
        await expectStatus(res, [202], `upload of ${what}`);
        res.body.resume();
        const loc = res.header("location");
        if (!loc) throw new FailedPreconditionError(`upload of ${what}: the registry gave no Location`);
        return uploadUrl(endpoint.url, loc, digest);
      });
      await this.#request(endpoint, reference, "", { method: "PUT", url: location, body: bytes, push: true, headers: { "content-type": "application/octet-stream" } }, `upload of ${what}`, async (res) => {
        await expectStatus(res, [201, 204], `upload of ${what}`);
        res.body.resume();
      });
      return digest;
    });
  }

  /** Pushes manifest bytes under a tag or their digest; returns their digest. */
  async pushManifest(ref: string | ImageReference, tagOrDigest: string, mediaType: string, bytes: Buffer): Promise<string> {
    const reference = toReference(ref);
    const digest = sha256Digest(bytes);
    return this.#withEndpoints(reference, "push", (endpoint) => {
      const what = `manifest ${reference.repository}${tagOrDigest.includes(":") ? "@" : ":"}${tagOrDigest} at ${endpoint.host}`;
      return this.#request(endpoint, reference, `/${reference.repository}/manifests/${tagOrDigest}`, { method: "PUT", body: bytes, push: true, headers: { "content-type": mediaType } }, `push of ${what}`, async (res) => {
        await expectStatus(res, [200, 201, 202], `push of ${what}`);
        res.body.resume();
        return digest;
      });
    });
  }

  /** A manifest's exact bytes, media type and digest (verified when asked by digest); undefined when there is none. */
  async manifestBytes(ref: string | ImageReference, tagOrDigest: string, accept = MANIFEST_ACCEPT): Promise<{ bytes: Buffer; mediaType: string | undefined; digest: string } | undefined> {
    const reference = toReference(ref);
    try {
      const m = await this.#fetchManifest(reference, tagOrDigest, tagOrDigest.includes(":") ? "pull" : "resolve", accept);
      return { bytes: m.bytes, mediaType: m.contentType, digest: m.digest };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /**
   * The OCI referrers API: the image index of manifests whose subject is
   * `digest`; undefined when the registry does not have the API (404, 400,
   * 405), as distribution 2.8 does not.
   */
  async referrersApi(ref: string | ImageReference, digest: string): Promise<Buffer | undefined> {
    const reference = toReference(ref);
    validateDigest(digest);
    return this.#withEndpoints(reference, "pull", (endpoint) => {
      const what = `referrers of ${reference.repository}@${digest} at ${endpoint.host}`;
      return this.#request(endpoint, reference, `/${reference.repository}/referrers/${digest}`, { headers: { accept: "application/vnd.oci.image.index.v1+json" } }, what, async (res) => {
        if ([400, 404, 405].includes(res.status) || !(res.header("content-type") ?? "").includes("application/vnd.oci.image.index.v1+json")) {
          await res.body.dump();
          return undefined;
        }
        await expectStatus(res, [200], what);
        return readBody(res, MAX_MANIFEST_BYTES, what);
      });
    });
  }

  /** Closes idle connections; requests still running fail. */
  async close(): Promise<void> {
    await this.#transport.close();
  }

  async #fetchManifest(reference: ImageReference, tagOrDigest: string, capability: HostCapability, accept = MANIFEST_ACCEPT): Promise<FetchedManifest> {
    const byDigest = tagOrDigest.includes(":");
    return this.#withEndpoints(reference, capability, (endpoint) => {
      const what = `manifest ${reference.repository}${byDigest ? "@" : ":"}${tagOrDigest} at ${endpoint.host}`;
      const init = { headers: { accept } };
      return this.#request(endpoint, reference, `/${reference.repository}/manifests/${tagOrDigest}`, init, what, async (res) => {
        await expectStatus(res, [200], what);
        const bytes = await readBody(res, MAX_MANIFEST_BYTES, what);
        const advertised = res.header("docker-content-digest");
        const digest = byDigest ? tagOrDigest : advertised && validDigest(advertised) ? advertised : sha256Digest(bytes);
        verifyDigest(bytes, digest, what);
        return { digest, bytes, contentType: res.header("content-type") };
      });
    });
  }

  /**
   * `range` of a blob from where the registry last redirected its requests
   * (blob-locations.ts), or undefined when there is no such place or it did
   * not answer: the caller asks the registry. No credentials go there: they
   * are the registry's, and a redirect drops them too.
   */
  async #fromLocation(key: string, endpoint: RegistryEndpoint, range: ByteRange, what: string): Promise<Buffer | undefined> {
    return this.#atLocation(key, endpoint, { range: rangeHeader(range.offset, range.length) }, what, (res) => readRange(res, range, what));
  }

  /** As #fromLocation, for any range request: `consume` reads a 200 or 206 from the location. */
  async #atLocation<T>(key: string, endpoint: RegistryEndpoint, headers: Record<string, string>, what: string, consume: (res: HttpResponse) => Promise<T>): Promise<T | undefined> {
    const url = this.#locations.get(key);
    if (!url) return undefined;
    try {
      const got = await this.#transport.send({ url, headers, skipVerify: endpoint.skipVerify, ...(endpoint.ca ? { ca: endpoint.ca } : {}), what: `${what} (at its storage location)` }, async (res) => {
        if (res.status !== 200 && res.status !== 206) {
          await res.body.dump();
          return undefined;
        }
        return { value: await consume(res) };
      });
      if (got) {
        this.#locations.counts.direct++;
        return got.value;
      }
    } catch (err) {
      log.debug("blob's storage location failed; asking the registry", { what, error: errorMessage(err) });
    }
    this.#locations.forget(key);
    return undefined;
  }

  /** Range requests sent straight to blobs' storage locations, and redirects followed (blob-locations.ts). */
  get locationCounts(): { direct: number; redirected: number } {
    return { ...this.#locations.counts };
  }

  /** Tries `fn` on each endpoint with `capability`, mirrors first; throws the last failure. */
  async #withEndpoints<T>(reference: ImageReference, capability: HostCapability, fn: (endpoint: RegistryEndpoint) => Promise<T>): Promise<T> {
    const endpoints = (await this.#endpointsFor(reference.host)).filter((e) => e.capabilities.has(capability));
    if (endpoints.length === 0) throw new UnavailableError(`${reference.host}: no configured host has the ${capability} capability`);
    let lastError: unknown;
    for (const endpoint of endpoints) {
      try {
        return await fn(endpoint);
      } catch (err) {
        if (err instanceof InvalidArgumentError) throw err;
        lastError = err;
        if (endpoint !== endpoints[endpoints.length - 1]) log.info("registry host failed, trying the next", { host: endpoint.host, error: errorMessage(err) });
      }
    }
    throw lastError;
  }

  #endpointsFor(host: string): Promise<RegistryEndpoint[]> {
    let endpoints = this.#endpoints.get(host);
    if (!endpoints) {
      endpoints = loadHosts(host, this.#hostsDir);
      if (this.#plainHttp) endpoints = endpoints.then((list) => list.map((e) => ({ ...e, url: e.url.replace(/^https:/, "http:") })));
      this.#endpoints.set(host, endpoints);
      endpoints.catch(() => this.#endpoints.delete(host));
    }
    return endpoints;
  }

  /** One API request with authorization: on a 401 it answers the challenge and retries once. */
  async #request<T>(
    endpoint: RegistryEndpoint,
    reference: ImageReference,
    path: string,
    init: RequestInit,
    what: string,
    consume: (res: HttpResponse) => Promise<T>,
  ): Promise<T> {
    const authorizer = await this.#authorizer;
    const scope = init.push ? pushScope(reference.repository) : pullScope(reference.repository);
    for (let attempt = 0; ; attempt++) {
      const authorization = await authorizer.header(endpoint, scope);
      let challenges: Challenge[] = [];
      const headers = { ...endpoint.headers, ...init.headers, ...(authorization ? { authorization } : {}) };
      const url = init.url ?? endpoint.url + path;
      const request = { url, method: init.method ?? "GET", headers, skipVerify: endpoint.skipVerify, ...(endpoint.ca ? { ca: endpoint.ca } : {}), ...(endpoint.client ? { client: endpoint.client } : {}), what, ...(init.body !== undefined ? { body: init.body } : {}) };
      const result = await this.#transport.send(request, async (res) => {
        if (res.status !== 401) return { value: await consume(res) };
        challenges = parseWwwAuthenticate(res.headers["www-authenticate"]);
        await res.body.dump();
        return UNAUTHORIZED;
      });
      if (result !== UNAUTHORIZED) return result.value;
      if (attempt > 0 || !authorizer.challenge(endpoint, challenges, scope)) {
        throw new FailedPreconditionError(`${what}: unauthorized (HTTP 401)${authorization ? ": credentials rejected" : ""}`);
      }
    }
  }
}

interface RequestInit {
  method?: "GET" | "HEAD" | "POST" | "PUT";
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** An absolute URL the registry gave (an upload's Location), instead of the endpoint's path. */
  url?: string;
  /** Ask for the push scope. */
  push?: boolean;
}

function blobWhat(endpoint: RegistryEndpoint, reference: ImageReference, digest: string, range?: { offset: number; length?: number }): string {
  const span = range ? ` [${range.offset}, ${range.length === undefined ? "end" : range.offset + range.length})` : "";
  return `blob ${digest}${span} of ${reference.repository} at ${endpoint.host}`;
}

function validDigest(digest: string): boolean {
  try {
    validateDigest(digest);
    return true;
  } catch {
    return false;
  }
}

/** Maps unexpected statuses to errdefs kinds: 404 NotFound, 416 InvalidArgument, others FailedPrecondition. */
async function expectStatus(res: HttpResponse, ok: number[], what: string): Promise<void> {
  if (ok.includes(res.status)) return;
  const detail = await errorDetail(res);
  const suffix = detail ? `: ${detail}` : "";
  if (res.status === 404) throw new NotFoundError(`${what}: not found${suffix}`);
  if (res.status === 416) throw new InvalidArgumentError(`${what}: range not satisfiable${suffix}`);
  if (res.status === 403) throw new FailedPreconditionError(`${what}: access denied (HTTP 403)${suffix}`);
  throw new FailedPreconditionError(`${what}: unexpected HTTP ${res.status}${suffix}`);
}

/** Collects `range.length` bytes at `range.offset` from a 206, or from a 200 that ignored the range. */
async function readRange(res: HttpResponse, range: ByteRange, what: string): Promise<Buffer> {
  let skip = bytesToSkip(res.status, res.header("content-range"), range.offset, what);
  const chunks: Buffer[] = [];
  let have = 0;
  for await (const data of res.body as AsyncIterable<Buffer>) {
    let chunk = data;
    if (skip > 0) {
      const n = Math.min(skip, chunk.length);
      skip -= n;
      chunk = chunk.subarray(n);
    }
    const take = Math.min(chunk.length, range.length - have);
    if (take > 0) chunks.push(chunk.subarray(0, take));
    have += take;
    if (have === range.length) break;
  }
  return Buffer.concat(chunks, have);
}

/** The URL to PUT an upload's bytes to: the registry's Location (relative or absolute) with `digest` added to its query. */
export function uploadUrl(base: string, location: string, digest: string): string {
  const url = new URL(location, base.endsWith("/") ? base : `${base}/`);
  url.searchParams.set("digest", digest);
  return url.toString();
}
