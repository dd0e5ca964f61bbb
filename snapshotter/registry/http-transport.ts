// HTTP for the registry client: undici agents (one verifying TLS, one for
// `skip_verify` hosts) that follow redirects, a per-request timeout, at most
// `concurrency` requests in flight, and bounded retries with exponential
// backoff on connection failures, timeouts, 429 and 5xx.
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { rootCertificates } from "node:tls";
import { finished } from "node:stream";
import pLimit, { type LimitFunction } from "p-limit";
import { Agent, interceptors, request, type Dispatcher } from "undici";
import { AugurError, FailedPreconditionError, UnavailableError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { DEFAULT_BODY_RATE, SlowBodyError, slowBodyGuard, type BodyRate } from "./slow-body.js";

const log = logger("registry");

export interface TransportOptions {
  /** Requests in flight at once, counting streaming bodies until they end. Default 8. */
  concurrency?: number;
  /** Longest wait for connect, for response headers, and between two body chunks, in ms. Default 30 s. */
  timeoutMs?: number;
  /** Retries after the first attempt for transient failures (and resumes of a broken stream). Default 4. */
  retries?: number;
  /** First backoff delay in ms, doubled every retry (with jitter), capped by maxBackoffMs. Default 200. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Redirects followed per request (registries send blobs to storage). Default 5. */
  maxRedirections?: number;
  userAgent?: string;
  /** Least a body must bring in every window while it is read (slow-body.ts); null: no minimum. */
  bodyRate?: BodyRate | null;
}

export const DEFAULT_RETRIES = 4;

export interface HttpRequest {
  url: string;
  method?: "GET" | "HEAD" | "POST" | "PUT";
  headers?: Record<string, string>;
  body?: string | Buffer;
  /** Accept any TLS certificate for this request. */
  skipVerify?: boolean;
  /** PEM files of CAs to trust for this request besides the system's (hosts.toml `ca`). */
  ca?: readonly string[];
  /** TLS client certificates to present (hosts.toml `client`). */
  client?: readonly { cert: string; key?: string }[];
  /** Names the host and object in errors, e.g. `blob sha256:… at 127.0.0.1:5000/demo`. */
  what: string;
}

export type ResponseBody = Dispatcher.ResponseData["body"];

export interface HttpResponse {
  status: number;
  /** The URL that answered: the request's, or where its redirects ended. */
  url: string;
  headers: Dispatcher.ResponseData["headers"];
  /** Must be read to its end or destroyed: it holds a concurrency slot until then. */
  body: ResponseBody;
  /** First value of a response header. */
  header(name: string): string | undefined;
}

const RETRYABLE_CODES = new Set([
  "ECONNRESET", "ECONNREFUSED", "ECONNABORTED", "EPIPE", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "EAI_AGAIN",
  "UND_ERR_SOCKET", "UND_ERR_CLOSED", "UND_ERR_CONNECT_TIMEOUT", "UND_ERR_HEADERS_TIMEOUT", "UND_ERR_BODY_TIMEOUT",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

/** True for failures worth another try: resets, refusals, timeouts. */
export function isTransientError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && RETRYABLE_CODES.has(code);
}

/** True for statuses worth another try: 429 and 5xx except 501. */
export function isTransientStatus(status: number): boolean {
  return status === 429 || (status >= 500 && status !== 501);
}

/** True when a request failed because the server said it is busy (429, 503), retries used up: ask elsewhere, blame nobody. */
export function isBusyError(err: unknown): boolean {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof TransientStatus) return e.status === 429 || e.status === 503;
  }
  return false;
}

class TransientStatus extends Error {
  constructor(readonly status: number, readonly retryAfterMs: number | undefined) {
    super(`HTTP ${status}`);
  }
}

export class HttpTransport {
  readonly #limit: LimitFunction;
  readonly #timeoutMs: number;
  readonly #retries: number;
  readonly #backoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #userAgent: string;
  readonly #verifying: Dispatcher;
  readonly #insecure: Dispatcher;
  readonly #agents: Agent[] = [];
  readonly #chain: Dispatcher.DispatcherComposeInterceptor[];
  readonly #withCa = new Map<string, Dispatcher>();

  constructor(options: TransportOptions = {}) {
    this.#limit = pLimit(options.concurrency ?? 8);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#retries = options.retries ?? DEFAULT_RETRIES;
    this.#backoffMs = options.backoffMs ?? 200;
    this.#maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.#userAgent = options.userAgent ?? "augur";
    const redirect = interceptors.redirect({ maxRedirections: options.maxRedirections ?? 5 });
    const rate = options.bodyRate === undefined ? DEFAULT_BODY_RATE : options.bodyRate;
    // the guard outermost: it watches the response a redirect ends at, named by the registry's URL
    this.#chain = rate ? [redirect, slowBodyGuard(rate)] : [redirect];
    this.#verifying = this.#agent({ rejectUnauthorized: true });
    this.#insecure = this.#agent({ rejectUnauthorized: false });
  }

  #agent(tls: { rejectUnauthorized: boolean; ca?: string[]; cert?: string[]; key?: string[] }): Dispatcher {
    const a = new Agent({ connect: { timeout: this.#timeoutMs, ...tls } });
    this.#agents.push(a);
    return a.compose(this.#chain);
  }

  /** The agent for `req`: insecure, the system's trust store, or that plus the request's own CAs and client certificates (one agent per set). */
  #dispatcherFor(req: HttpRequest): Dispatcher {
    if (!req.ca?.length && !req.client?.length) return req.skipVerify ? this.#insecure : this.#verifying;
    const key = JSON.stringify([req.skipVerify ?? false, req.ca ?? [], req.client ?? []]);
    let d = this.#withCa.get(key);
    if (!d) {
      const read = (file: string, setting: string): string => {
        try {
          return readFileSync(file, "utf8");
        } catch (err) {
          throw new FailedPreconditionError(`${req.what}: cannot read ${setting} file ${file} (hosts.toml ${setting}): ${errorMessage(err)}`, { cause: err });
        }
      };
      const pems = (req.ca ?? []).map((file) => read(file, "ca"));
      const client = req.client ?? [];
      d = this.#agent({
        rejectUnauthorized: !req.skipVerify,
        // as containerd does: the system's roots, and these besides
        ...(pems.length ? { ca: [...rootCertificates, ...pems] } : {}),
        // a cert file without a key file holds its key too
        ...(client.length ? { cert: client.map((c) => read(c.cert, "client")), key: client.map((c) => read(c.key ?? c.cert, "client")) } : {}),
      });
      this.#withCa.set(key, d);
    }
    return d;
  }

  /**
   * Sends `req` and hands the response to `consume`, retrying transient failures
   * (in sending or in `consume`) with backoff. Other statuses go to `consume` as they are.
   * Throws UnavailableError once the retries are used up or on a non-transient network error.
   */
  async send<T>(req: HttpRequest, consume: (res: HttpResponse) => Promise<T>): Promise<T> {
    let lastError: unknown;
    for (let attempt = 0; attempt <= this.#retries; attempt++) {
      if (attempt > 0) {
        const delay = this.#backoff(attempt, lastError instanceof TransientStatus ? lastError.retryAfterMs : undefined);
        log.debug("retrying request", { what: req.what, attempt, delayMs: delay, error: errorMessage(lastError) });
        await sleep(delay);
      }
      try {
        const res = await this.#once(req);
        try {
          return await consume(res);
        } catch (err) {
          // a body nobody reads would hold its request slot for good
          res.body.destroy();
          throw err;
        }
      } catch (err) {
        if (err instanceof SlowBodyError) {
          // trying again would wait as long again: the read fails now, the next one asks afresh
          log.warn("registry too slow; request given up", { what: req.what, error: err.message });
          throw new UnavailableError(`${req.what}: ${err.message}`, { cause: err });
        }
        if (!(err instanceof TransientStatus) && !isTransientError(err)) {
          if (isNetworkError(err)) throw new UnavailableError(`${req.what}: ${errorMessage(err)}`, { cause: err });
          throw err;
        }
        lastError = err;
      }
    }
    const tries = this.#retries + 1;
    log.warn("request failed", { what: req.what, attempts: tries, error: errorMessage(lastError) });
    throw new UnavailableError(`${req.what}: unavailable after ${tries} attempts: ${errorMessage(lastError)}`, { cause: lastError });
  }

  /** One attempt: a slot, the request, and the slot handed back when the body ends. */
  async #once(req: HttpRequest): Promise<HttpResponse> {
    const release = await this.#acquire();
    let res: Dispatcher.ResponseData;
    try {
      res = await request(req.url, {
        method: req.method ?? "GET",
        headers: { "user-agent": this.#userAgent, ...req.headers },
        body: req.body,
        dispatcher: this.#dispatcherFor(req),
        headersTimeout: this.#timeoutMs,
        bodyTimeout: this.#timeoutMs,
      });
    } catch (err) {
      release();
      throw err;
    }
    finished(res.body, () => release());
    if (isTransientStatus(res.statusCode)) {
      await res.body.dump().catch(() => undefined);
      throw new TransientStatus(res.statusCode, retryAfterMs(res.headers["retry-after"]));
    }
    const headers = res.headers;
    // undici's redirect interceptor lists the URLs it went through, the answering one last
    const history = (res.context as { history?: readonly URL[] } | undefined)?.history;
    return {
      status: res.statusCode,
      url: history?.at(-1)?.toString() ?? req.url,
      headers,
      body: res.body,
      header: (name) => {
        const v = headers[name.toLowerCase()];
        return Array.isArray(v) ? v[0] : v;
      },
    };
  }

  #acquire(): Promise<() => void> {
    return new Promise((granted) => {
      void this.#limit(() => new Promise<void>((release) => granted(once(release))));
    });
  }

  #backoff(attempt: number, retryAfter: number | undefined): number {
    const exp = Math.min(this.#maxBackoffMs, this.#backoffMs * 2 ** (attempt - 1));
    const jittered = exp / 2 + (Math.random() * exp) / 2;
    return retryAfter !== undefined ? Math.min(this.#maxBackoffMs, Math.max(jittered, retryAfter)) : jittered;
  }

  /** Requests currently holding a slot, and requests waiting for one. */
  get load(): { active: number; pending: number } {
    return { active: this.#limit.activeCount, pending: this.#limit.pendingCount };
  }

  async close(): Promise<void> {
    await Promise.all(this.#agents.map((a) => a.close()));
  }
}

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (!called) {
      called = true;
      fn();
    }
  };
}

/** Socket, TLS and undici failures (as opposed to augur's own errors raised while reading a response). */
function isNetworkError(err: unknown): boolean {
  if (err instanceof AugurError) return false;
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === "string" && (/^E[A-Z]+$/.test(code) || /^(UND_ERR|ERR_TLS|ERR_SSL)/.test(code) || /CERT|SIGNATURE/.test(code));
}

function retryAfterMs(value: string | string[] | undefined): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return undefined;
  const seconds = Number(v);
  if (Number.isFinite(seconds)) return seconds * 1000;
  const date = Date.parse(v);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}

/** Reads a whole response body, refusing more than `limit` bytes. */
export async function readBody(res: HttpResponse, limit = Number.POSITIVE_INFINITY, what = "response"): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      res.body.destroy();
      throw new FailedPreconditionError(`${what}: response larger than ${limit} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Reads up to `limit` bytes of an error response for a message, then drops the rest. */
export async function errorDetail(res: HttpResponse, limit = 512): Promise<string> {
  try {
    const text = (await readBody(res, 64 << 10)).toString("utf8");
    return text.replace(/\s+/g, " ").trim().slice(0, limit);
  } catch {
    return "";
  }
}
