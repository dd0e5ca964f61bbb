// The HTTP API a person or Prometheus talks to. It listens on a unix socket
// under --root unless --api names host:port, so nothing claims a fixed port.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { rmSync } from "node:fs";
import { errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";

const log = logger("api");

export type Handler = (req: IncomingMessage, url: URL) => Promise<{ status?: number; type?: string; body: string | object }>;

export interface Route {
  method: "GET" | "POST";
  /** Matched against the path; capture groups are available via `url.pathname`. */
  path: RegExp;
  handler: Handler;
}

export class HttpApi {
  readonly #server: Server;
  #unixPath: string | undefined;

  constructor(private readonly routes: Route[]) {
    this.#server = createServer((req, res) => void this.dispatch(req, res));
  }

  /** `address` is host:port (TCP) or a filesystem path (unix socket). */
  async listen(address: string): Promise<void> {
    const tcp = /^(\[[^\]]+\]|[^/:]+):(\d+)$/.exec(address);
    await new Promise<void>((resolve, reject) => {
      this.#server.once("error", reject);
      if (tcp) {
        this.#server.listen(Number(tcp[2]), (tcp[1] ?? "").replace(/^\[|\]$/g, ""), resolve);
      } else {
        rmSync(address, { force: true });
        this.#unixPath = address;
        this.#server.listen(address, resolve);
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
    const route = this.routes.find((r) => r.path.test(url.pathname));
    try {
      if (!route) return send(res, 404, "application/json", { error: `no such endpoint ${url.pathname}` });
      if (route.method !== req.method) return send(res, 405, "application/json", { error: `${url.pathname} takes ${route.method}` });
      const out = await route.handler(req, url);
      send(res, out.status ?? 200, out.type ?? "application/json", out.body);
    } catch (err) {
      send(res, 500, "application/json", { error: errorMessage(err) });
    }
  }
}

function send(res: ServerResponse, status: number, type: string, body: string | object): void {
  const text = typeof body === "string" ? body : JSON.stringify(body, null, 2) + "\n";
  res.writeHead(status, { "content-type": type, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
