// The transport gives up a body that trickles (bytes keep coming, too few to
// ever finish) within a window or two, once, with an error naming the URL;
// a body augur itself is slow to read (backpressure) is not held against
// the server, and a normal body is untouched.
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { HttpTransport } from "../../../snapshotter/registry/http-transport.js";
import { UnavailableError } from "../../../snapshotter/errdefs/errors.js";

const MiB = 1 << 20;
let server: Server;
let base: string;
const hits: Record<string, number> = {};
const timers = new Set<NodeJS.Timeout>();

beforeAll(async () => {
  server = createServer((req, res) => {
    const path = req.url ?? "";
    hits[path] = (hits[path] ?? 0) + 1;
    const size = path === "/paused" ? 32 * MiB : MiB;
    res.writeHead(200, { "content-length": String(size) });
    if (path === "/trickle") {
      // 1 KB every 100 ms: 10 KB/s, a megabyte in 100 s
      let sent = 0;
      const t = setInterval(() => {
        if (res.destroyed || sent >= MiB) return clearInterval(t);
        res.write(Buffer.alloc(1024));
        sent += 1024;
      }, 100);
      timers.add(t);
      res.on("close", () => clearInterval(t));
      return;
    }
    res.end(Buffer.alloc(size, 7));
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const t of timers) clearInterval(t);
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

const rate = { minBytes: 32 << 10, windowMs: 500 };

async function readAll(t: HttpTransport, path: string, waitBeforeReadingMs = 0): Promise<number> {
  return t.send({ url: `${base}${path}`, what: `blob at ${path}` }, async (res) => {
    if (waitBeforeReadingMs) await sleep(waitBeforeReadingMs);
    let n = 0;
    for await (const chunk of res.body) n += (chunk as Buffer).length;
    return n;
  });
}

describe("a registry body that trickles", () => {
  it("is given up within two windows, not retried, with an error naming the request", async () => {
    const t = new HttpTransport({ bodyRate: rate, retries: 3, backoffMs: 10 });
    try {
      const started = performance.now();
      const err = await readAll(t, "/trickle").then(() => undefined, (e: unknown) => e);
      const took = performance.now() - started;
      expect(err).toBeInstanceOf(UnavailableError);
      expect(String(err)).toMatch(/blob at \/trickle: http:\/\/127\.0\.0\.1:\d+\/trickle sent \d+ bytes in 0\.5 s, under the 32768 bytes a working registry sends; given up/);
      expect(took).toBeLessThan(2 * rate.windowMs + 500);
      expect(hits["/trickle"]).toBe(1);
    } finally {
      await t.close();
    }
  });

  it("a body augur does not read for a while (backpressure) is not given up, and arrives whole", async () => {
    const t = new HttpTransport({ bodyRate: rate });
    try {
      // 32 MiB: more than the socket and the body's buffer hold, so undici pauses the response
      expect(await readAll(t, "/paused", 4 * rate.windowMs)).toBe(32 * MiB);
    } finally {
      await t.close();
    }
  });

  it("without a minimum the trickle is only bounded by the idle timeout", async () => {
    const t = new HttpTransport({ bodyRate: null, timeoutMs: 60_000 });
    try {
      const outcome = await Promise.race([readAll(t, "/trickle").then(() => "done", () => "failed"), sleep(3 * rate.windowMs).then(() => "still reading")]);
      expect(outcome).toBe("still reading");
    } finally {
      server.closeAllConnections(); // ends the trickle, so the transport can close
      await t.close();
    }
  });
});
