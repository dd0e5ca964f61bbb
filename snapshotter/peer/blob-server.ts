// `augur serve --serve-cache ADDR`: the node-local cache, read-only, over the
// OCI distribution blob API, so another augur (--peer), containerd's own
// hosts.toml mirror setting, or a P2P engine in front (Dragonfly, Spegel) can
// take layer bytes from this node instead of the registry.
//
//   GET|HEAD /v2/                              200 (the API version check)
//   GET|HEAD /v2/<name>/blobs/<digest>         the whole blob, if cached whole (Range honoured)
//   GET      /v2/<name>/blobs/<digest> +Range  206 when cached chunks cover the range
//   GET      /augur/v1/ranges/<digest>         the ranges held of that digest (augur cache sync)
//   GET      /augur/v1/indexes/<digest>        the layer's seekable index, if cached (untrusted by
//                                              the asker: checked entry by entry, like the registry's)
//
// Only content by digest: no catalog, no tags, no manifests, no paths (404),
// nothing written (405). What is served was verified before it was stored,
// but for chunks `augur cache sync` copied (checked when first read here);
// clients verify everything again (augur does, containerd checks the digest).
// At most `concurrency` requests are served at once; more get 503 and
// Retry-After, which clients treat as "ask the next host".
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { pipeline } from "node:stream";
import type { LayerCache, OpenBlob } from "../cache/layer-cache.js";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";

const log = logger("peer");

const BLOB = /^\/v2\/((?:[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)\/blobs\/(sha256:[0-9a-f]{64})$/;
const RANGES = /^\/augur\/v1\/ranges\/(sha256:[0-9a-f]{64})$/;
const INDEXES = /^\/augur\/v1\/indexes\/(sha256:[0-9a-f]{64})$/;
/** Requests served at once by default. */
export const DEFAULT_SERVE_CONCURRENCY = 32;
/** Ranges larger than this are not assembled from chunks in memory (whole blobs stream). */
const MAX_CHUNKED_RANGE = 8 << 20;
/** A client that sends or reads nothing for this long is cut off: it must not hold a slot for good. */
const IDLE_MS = 30_000;

export interface BlobServerOptions {
  concurrency?: number;
}

/** What the server has answered, for /cache/status and /metrics. */
export interface BlobServerStats {
  requests: number;
  servedBytes: number;
  notFound: number;
  busy: number;
}

export class BlobServer {
  readonly stats: BlobServerStats = { requests: 0, servedBytes: 0, notFound: 0, busy: 0 };
  readonly #server: Server;
  readonly #concurrency: number;
  #active = 0;

  constructor(
    private readonly cache: LayerCache,
    opts: BlobServerOptions = {},
  ) {
    this.#concurrency = opts.concurrency ?? DEFAULT_SERVE_CONCURRENCY;
    this.#server = createServer((req, res) => void this.#handle(req, res));
    this.#server.keepAliveTimeout = IDLE_MS;
    this.#server.setTimeout(IDLE_MS, (socket) => socket.destroy());
    // after listen: a failed accept (EMFILE) is logged, never an unhandled error that stops augur
    this.#server.on("error", (err) => log.warn("cache server error", { error: errorMessage(err) }));
  }

  /** Listens on `host:port` (`:port` or a bare port means every address); resolves the bound address. */
  async listen(addr: string): Promise<{ host: string; port: number }> {
    const { host, port } = parseListenAddress(addr);
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        resolve();
      });
    });
    const bound = this.#server.address();
    const out = typeof bound === "object" && bound ? { host: bound.address, port: bound.port } : { host: host ?? "", port };
    log.info("serving the cache to peers (OCI blob API, read-only)", { address: `${out.host}:${out.port}` });
    return out;
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    // peers mid-transfer are cut off: they ask the registry
    this.#server.closeAllConnections();
    await closed;
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    this.stats.requests++;
    res.setHeader("docker-distribution-api-version", "registry/2.0");
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.setHeader("allow", "GET, HEAD");
      return this.#error(res, 405, "UNSUPPORTED", "this is a read-only cache");
    }
    if (this.#active >= this.#concurrency) {
      this.stats.busy++;
      res.setHeader("retry-after", "1");
      return this.#error(res, 503, "TOOMANYREQUESTS", "too many requests at once; ask another host");
    }
    this.#active++;
    res.once("close", () => this.#active--);
    const path = (req.url ?? "/").split("?")[0] as string;
    try {
      if (path === "/v2/" || path === "/v2") return this.#json(res, 200, {});
      const blob = BLOB.exec(path);
      if (blob) return await this.#blob(req, res, blob[2] as string);
      const ranges = RANGES.exec(path);
      if (ranges && req.method === "GET") {
        const digest = ranges[1] as string;
        const whole = await this.cache.openBlob(digest);
        await whole?.handle.close();
        return this.#json(res, 200, { digest, size: whole?.size ?? null, ranges: this.cache.heldRanges(digest) });
      }
      const index = INDEXES.exec(path);
      const bytes = index && req.method === "GET" ? await this.cache.readIndex(index[1] as string) : undefined;
      if (bytes) {
        res.writeHead(200, { "content-type": "application/octet-stream", "content-length": bytes.length });
        this.stats.servedBytes += bytes.length;
        res.end(bytes);
        return;
      }
      this.stats.notFound++;
      return this.#error(res, 404, "NAME_UNKNOWN", "this cache serves blobs by digest only");
    } catch (err) {
      log.warn("peer request failed", { path, error: errorMessage(err) });
      if (!res.headersSent) this.#error(res, 500, "UNKNOWN", "could not read the cache");
      else res.destroy();
    }
  }

  async #blob(req: IncomingMessage, res: ServerResponse, digest: string): Promise<void> {
    // a Range this server does not take (several, a suffix) is ignored, as HTTP allows: the whole blob or nothing
    const range = req.headers.range === undefined ? undefined : (parseRange(req.headers.range) ?? undefined);
    // opened once: a blob evicted meanwhile stays readable through the handle
    const file = await this.cache.openBlob(digest);
    if (file) {
      const size = file.size;
      res.setHeader("docker-content-digest", digest);
      res.setHeader("accept-ranges", "bytes");
      res.setHeader("content-type", "application/octet-stream");
      if (!range) {
        res.setHeader("content-length", size);
        res.writeHead(200);
        return this.#stream(req, res, file, 0, size);
      }
      const end = Math.min(range.end ?? size - 1, size - 1);
      if (range.start >= size || end < range.start) {
        await file.handle.close();
        res.setHeader("content-range", `bytes */${size}`);
        return this.#error(res, 416, "RANGE_INVALID", `range starts past the blob's ${size} bytes`);
      }
      res.setHeader("content-range", `bytes ${range.start}-${end}/${size}`);
      res.setHeader("content-length", end - range.start + 1);
      res.writeHead(206);
      return this.#stream(req, res, file, range.start, end + 1);
    }
    // only chunks, if anything: a range they cover, nothing else
    if (range && range.end !== undefined && range.end - range.start + 1 <= MAX_CHUNKED_RANGE) {
      const data = req.method === "HEAD" ? undefined : await this.cache.readRange(digest, range.start, range.end - range.start + 1);
      if (data) {
        res.setHeader("docker-content-digest", digest);
        res.setHeader("content-type", "application/octet-stream");
        res.setHeader("content-range", `bytes ${range.start}-${range.end}/*`);
        res.setHeader("content-length", data.length);
        res.writeHead(206);
        this.stats.servedBytes += data.length;
        res.end(data);
        return;
      }
    }
    this.stats.notFound++;
    return this.#error(res, 404, "BLOB_UNKNOWN", `${digest}${range ? ` [${range.start}-${range.end ?? ""}]` : ""} is not in this cache`);
  }

  #stream(req: IncomingMessage, res: ServerResponse, file: OpenBlob, start: number, end: number): void {
    if (req.method === "HEAD" || end <= start || res.destroyed) {
      // (a client gone while the file opened: the handle is closed here, nothing streams)
      void file.handle.close();
      res.end();
      return;
    }
    const stream = file.handle.createReadStream({ start, end: end - 1, highWaterMark: 1 << 20, autoClose: true });
    stream.on("data", (chunk: string | Buffer) => {
      this.stats.servedBytes += chunk.length;
    });
    // either side ending early ends both, and the handle closes with the stream
    pipeline(stream, res, () => undefined);
  }

  #json(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  }

  /** An error in the distribution spec's shape. */
  #error(res: ServerResponse, status: number, code: string, message: string): void {
    this.#json(res, status, { errors: [{ code, message }] });
  }
}

/** One `bytes=a-b` or `bytes=a-`; null for anything else (suffix and multiple ranges are not served). */
export function parseRange(header: string): { start: number; end?: number } | null {
  const m = /^bytes=(\d+)-(\d*)$/.exec(header.trim());
  if (!m) return null;
  const start = Number(m[1]);
  const end = m[2] === "" ? undefined : Number(m[2]);
  if (!Number.isSafeInteger(start) || (end !== undefined && (!Number.isSafeInteger(end) || end < start))) return null;
  return end === undefined ? { start } : { start, end };
}

/** `host:port`, `[v6]:port`, `:port` or `port`. */
export function parseListenAddress(addr: string): { host?: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]*):)?(\d+)$/.exec(addr.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || !(port >= 0 && port < 65536)) throw new InvalidArgumentError(`serve-cache ${JSON.stringify(addr)}: expected host:port, e.g. 0.0.0.0:5050`);
  const host = m[1] ? m[1].replace(/^\[|\]$/g, "") : undefined;
  return host ? { host, port } : { port };
}
