// The HTTP API a person or Prometheus talks to. It listens on a unix socket
// under --root unless --api names host:port, so nothing claims a fixed port.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { chmodSync, rmSync } from "node:fs";
import { logger } from "../util/logging.js";
import { errorBody, httpStatusOf, PayloadTooLargeError } from "./http-errors.js";

const log = logger("api");

export interface Request {
  url: URL;
  /** The path's capture groups. */
  params: string[];
  /** The request body, read up to the route's limit (413 beyond it). */
  body: () => Promise<Buffer>;
}

export type Handler = (req: Request) => Promise<{ status?: number; type?: string; body: string | object }>;

export interface Route {
  method: "GET" | "POST";
  /** Matched against the whole path; capture groups become `params`. */
  path: RegExp;
  handler: Handler;
  /** Bytes of request body the route reads at most (default 1 MiB). */
  maxBody?: number;
}

/** Where --api points: host:port is TCP, anything else a unix socket path. */
export function apiTarget(address: string): { host: string; port: number } | { socketPath: string } {
  const tcp = /^(\[[^\]]+\]|[^/:]+):(\d+)$/.exec(address);
  return tcp ? { host: (tcp[1] ?? "").replace(/^\[|\]$/g, ""), port: Number(tcp[2]) } : { socketPath: address };
}

export class HttpApi {
  readonly #server: Server;
  #unixPath: string | undefined;

  constructor(private readonly routes: Route[]) {
    this.#server = createServer((req, res) => void this.dispatch(req, res));
  }

  /** `address` is host:port (TCP) or a filesystem path (unix socket). */
  async listen(address: string): Promise<void> {
    const target = apiTarget(address);
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      if ("port" in target) {
        this.#server.listen(target.port, target.host, resolve);
      } else {
        rmSync(address, { force: true });
        this.#unixPath = address;
        this.#server.listen(address, () => {
          chmodSync(address, 0o600); // only root (augur's user) may connect, whatever the umask
          resolve();
        });
      }
    });
    log.info("HTTP API listening", { address });
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#server.closeAllConnections();
    if (this.#unixPath) rmSync(this.#unixPath, { force: true });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://augur");
    const matching = this.routes.filter((r) => r.path.test(url.pathname));
    const route = matching.find((r) => r.method === req.method);
    try {
      if (matching.length === 0) return send(res, 404, "application/json", { error: `no such endpoint ${url.pathname}` });
      if (!route) {
        res.setHeader("allow", matching.map((r) => r.method).join(", "));
        return send(res, 405, "application/json", { error: `${url.pathname} takes ${matching.map((r) => r.method).join(" or ")}` });
      }
      const params = (route.path.exec(url.pathname) ?? []).slice(1);
      const out = await route.handler({ url, params, body: () => readBody(req, route.maxBody ?? 1 << 20) });
      send(res, out.status ?? 200, out.type ?? "application/json", out.body);
    } catch (err) {
      const status = httpStatusOf(err);
      if (status === 500) log.error("API request failed", { path: url.pathname, error: errorBody(err).error });
      send(res, status, "application/json", errorBody(err));
      if (err instanceof PayloadTooLargeError) req.destroy();
    }
  }
}

/** The body, or PayloadTooLargeError as soon as it passes `limit` bytes. */
async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = Number(req.headers["content-length"] ?? NaN);
  if (declared > limit) throw new PayloadTooLargeError(limit);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > limit) throw new PayloadTooLargeError(limit);
    parts.push(chunk);
  }
  return Buffer.concat(parts);
}

function send(res: ServerResponse, status: number, type: string, body: string | object): void {
  const text = typeof body === "string" ? body : JSON.stringify(body, null, 2) + "\n";
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
