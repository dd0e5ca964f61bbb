// `--peer URL`: other nodes' caches (augur serve --serve-cache, or anything
// speaking the OCI blob API), asked before the registry on a miss. A peer is
// an untrusted source like the registry: what it sends is verified like any
// other byte (span and chunk digests, the blob digest of a whole stream). A
// peer that sent bad bytes, failed or timed out is left alone for a while, and
// the registry answers instead.
import { Transform, pipeline, type Readable, type TransformCallback } from "node:stream";
import { FailedPreconditionError, InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { DigestVerifier } from "../registry/digest.js";
import { HttpTransport, isBusyError, readBody, type HttpResponse } from "../registry/http-transport.js";
import { rangeHeader } from "../registry/blob-range.js";
import { logger } from "../util/logging.js";

const log = logger("peer");

/** A peer that failed is not asked again for this long. */
export const PEER_BACKOFF_MS = 60_000;
/** A peer is a shortcut: if it is slower than this to answer (or between body chunks), the registry is asked. */
const PEER_TIMEOUT_MS = 3_000;
/** A layer index larger than this is not taken from a peer (the registry's limit too). */
const MAX_INDEX_BYTES = 256 << 20;

export interface PeerStats {
  /** Ranges and blobs a peer sent. */
  hits: number;
  /** Asked, and no peer had it. */
  misses: number;
  /** Bytes peers sent. */
  bytes: number;
  /** Times a peer was set aside (bad bytes, errors, timeouts). */
  distrusted: number;
}

/** Bytes a peer sent, and which peer, to blame it if they fail their check. */
export interface PeerBytes {
  data: Buffer;
  peer: string;
}

export class Peers {
  readonly urls: readonly string[];
  readonly stats: PeerStats = { hits: 0, misses: 0, bytes: 0, distrusted: 0 };
  readonly #transport: HttpTransport;
  readonly #timeoutMs: number;
  /** Peer URL -> when it may be asked again. */
  readonly #avoidUntil = new Map<string, number>();

  constructor(urls: readonly string[], opts: { timeoutMs?: number } = {}) {
    this.urls = urls.map(normalizePeerUrl);
    this.#timeoutMs = opts.timeoutMs ?? PEER_TIMEOUT_MS;
    this.#transport = new HttpTransport({ timeoutMs: this.#timeoutMs, retries: 0, maxRedirections: 0, concurrency: 16, userAgent: "augur-peer" });
  }

  /** Peers to ask now, in the configured order. */
  #usable(): string[] {
    const now = Date.now();
    return this.urls.filter((u) => (this.#avoidUntil.get(u) ?? 0) <= now);
  }

  /** Sets a peer aside for a while; logged once per time. */
  distrust(peer: string, why: string): void {
    const until = this.#avoidUntil.get(peer) ?? 0;
    if (until > Date.now()) return;
    this.#avoidUntil.set(peer, Date.now() + PEER_BACKOFF_MS);
    this.stats.distrusted++;
    log.warn("peer set aside; asking the registry instead", { peer, why, seconds: PEER_BACKOFF_MS / 1000 });
  }

  /**
   * Asks each usable peer in turn: `ask` resolves the answer, or undefined
   * for "not here" (the next peer is asked). A peer that fails is set aside;
   * one that says it is busy (429, 503) is only skipped this time.
   */
  async #firstPeer<T>(what: (peer: string) => string, ask: (peer: string, what: string) => Promise<T | undefined>): Promise<{ value: T; peer: string } | undefined> {
    for (const peer of this.#usable()) {
      try {
        const value = await ask(peer, what(peer));
        if (value !== undefined) {
          this.stats.hits++;
          return { value, peer };
        }
      } catch (err) {
        if (!isBusyError(err)) this.distrust(peer, errorMessage(err));
      }
    }
    this.stats.misses++;
    return undefined;
  }

  /** Bytes [offset, offset+length) of a blob from the first peer that has them, or undefined. */
  async fetchRange(repository: string, digest: string, offset: number, length: number): Promise<PeerBytes | undefined> {
    const got = await this.#firstPeer(
      (peer) => `blob ${digest} [${offset}, ${offset + length}) at peer ${peer}`,
      async (peer, what) => {
        const data = await this.#transport.send({ url: blobUrl(peer, repository, digest), headers: { range: rangeHeader(offset, length) }, what }, async (res) => {
          if (await notHere(res)) return undefined;
          if (res.status !== 206 || !startsAt(res, offset)) throw new Error(`answered HTTP ${res.status} ${res.header("content-range") ?? ""}`.trim());
          return readBody(res, length, what);
        });
        if (data && data.length !== length) throw new Error(`sent ${data.length} of ${length} bytes`);
        return data;
      },
    );
    if (!got) return undefined;
    this.stats.bytes += got.value.length;
    return { data: got.value, peer: got.peer };
  }

  /**
   * The whole blob as a stream from the first peer that has it whole, or
   * undefined. The stream fails at its end unless the bytes match `digest`,
   * and as soon as it brings more than `size` bytes.
   */
  async blobStream(repository: string, digest: string, size: number): Promise<{ body: Readable; peer: string } | undefined> {
    const got = await this.#firstPeer(
      (peer) => `blob ${digest} at peer ${peer}`,
      (peer, what) =>
        this.#transport.send({ url: blobUrl(peer, repository, digest), what }, async (res) => {
          if (await notHere(res)) return undefined;
          if (res.status !== 200) throw new Error(`answered HTTP ${res.status}`);
          return { body: res.body, what };
        }),
    );
    if (!got) return undefined;
    const body: Readable = pipeline(got.value.body, new ByteCount(size, got.value.what, (n) => (this.stats.bytes += n)), new DigestVerifier(digest, got.value.what), () => undefined);
    return { body, peer: got.peer };
  }

  /**
   * A small blob whole (an artifact's profile or index), from the first peer
   * that has it, checked against `digest`; undefined when no peer has it, or
   * what came failed its check or took longer than the peer timeout plus a
   * second per MiB (that peer is set aside: a peer that trickles must not
   * hold up a layer's open, which waits for its index).
   */
  async blob(repository: string, digest: string, size: number): Promise<Buffer | undefined> {
    const got = await this.blobStream(repository, digest, size);
    if (!got) return undefined;
    const ms = this.#timeoutMs + Math.ceil(size / (1 << 20)) * 1000;
    const deadline = setTimeout(() => got.body.destroy(new Error(`not sent whole within ${ms} ms`)), ms);
    const parts: Buffer[] = [];
    try {
      for await (const chunk of got.body) parts.push(chunk as Buffer);
    } catch (err) {
      this.distrust(got.peer, `its copy of ${digest} failed: ${errorMessage(err)}`);
      return undefined;
    } finally {
      clearTimeout(deadline);
    }
    const bytes = Buffer.concat(parts);
    if (bytes.length !== size) {
      this.distrust(got.peer, `sent ${bytes.length} bytes of ${digest}, ${size} expected`);
      return undefined;
    }
    return bytes;
  }

  /** The seekable index a peer holds of a layer (untrusted: the caller checks it like the registry's), or undefined. */
  async fetchIndex(digest: string): Promise<{ bytes: Buffer; peer: string } | undefined> {
    const got = await this.#firstPeer(
      (peer) => `index of ${digest} at peer ${peer}`,
      (peer, what) =>
        this.#transport.send({ url: `${peer}/augur/v1/indexes/${digest}`, what }, async (res) => {
          if (await notHere(res)) return undefined;
          if (res.status !== 200) throw new Error(`answered HTTP ${res.status}`);
          return readBody(res, MAX_INDEX_BYTES, what);
        }),
    );
    if (!got) return undefined;
    this.stats.bytes += got.value.length;
    return { bytes: got.value, peer: got.peer };
  }

  /** The ranges a peer holds of a blob (augur cache sync): its size if it holds it whole. */
  async heldRanges(peer: string, digest: string): Promise<{ size: number | null; ranges: [number, number][] }> {
    const what = `cached ranges of ${digest} at peer ${peer}`;
    return this.#transport.send({ url: `${normalizePeerUrl(peer)}/augur/v1/ranges/${digest}`, what }, async (res) => {
      if (res.status !== 200) {
        await res.body.dump();
        throw new Error(`${what}: HTTP ${res.status}`);
      }
      const doc = JSON.parse((await readBody(res, 16 << 20, what)).toString("utf8")) as { size?: unknown; ranges?: unknown };
      const ranges = Array.isArray(doc.ranges) ? doc.ranges.filter((r): r is [number, number] => Array.isArray(r) && r.length === 2 && Number.isSafeInteger(r[0]) && Number.isSafeInteger(r[1]) && r[0] >= 0 && r[1] > r[0]) : [];
      return { size: typeof doc.size === "number" && Number.isSafeInteger(doc.size) ? doc.size : null, ranges };
    });
  }

  async close(): Promise<void> {
    await this.#transport.close();
  }
}

/** A peer's base URL: `http://host:port` (no trailing slash, no /v2). */
export function normalizePeerUrl(url: string): string {
  let u: URL;
  try {
    u = new URL(/^[a-z]+:\/\//i.test(url) ? url : `http://${url}`);
  } catch {
    throw new InvalidArgumentError(`peer ${JSON.stringify(url)} is not a URL (expected http://host:port)`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") throw new InvalidArgumentError(`peer ${JSON.stringify(url)}: only http and https peers are supported`);
  return `${u.protocol}//${u.host}${u.pathname.replace(/\/+$/, "").replace(/\/v2$/, "")}`;
}

/** 404 and 416 mean "not in this cache": the body is dropped and the next peer asked. */
async function notHere(res: HttpResponse): Promise<boolean> {
  if (res.status !== 404 && res.status !== 416) return false;
  await res.body.dump();
  return true;
}

/** Counts the bytes passing through, and fails the stream past `limit` (a peer cannot fill the disk). */
class ByteCount extends Transform {
  #seen = 0;

  constructor(
    readonly limit: number,
    readonly what: string,
    readonly onBytes: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#seen += chunk.length;
    this.onBytes(chunk.length);
    if (this.#seen > this.limit) callback(new FailedPreconditionError(`${this.what}: more than the ${this.limit} bytes the manifest says`));
    else callback(null, chunk);
  }
}

function blobUrl(peer: string, repository: string, digest: string): string {
  return `${peer}/v2/${repository}/blobs/${digest}`;
}

function startsAt(res: HttpResponse, offset: number): boolean {
  const m = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(res.header("content-range") ?? "");
  return !!m && Number(m[1]) === offset;
}
