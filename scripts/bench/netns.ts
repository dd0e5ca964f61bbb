// A registry behind a slow link, for benchmarks:
//   - a network namespace joined to the host by a veth pair, `tc htb` shaping
//     both directions to a fixed rate (netem is not in this kernel);
//   - docker-registry serving a storage directory inside the namespace;
//   - a user-space TCP proxy on 127.0.0.1 in front of it that adds latency
//     (each new connection, and the first bytes of each new HTTP request on a
//     connection, wait `latencyMs`: one round trip each) and counts the bytes.
// Everything is torn down by `stop()`, and on process exit (even after an
// exception or a signal) by a synchronous fallback.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { Agent as HttpAgent, createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from "node:http";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { canConnect, runOk, startProcess, waitFor, type Proc } from "../lib/processes.js";
import { registryConfig } from "../lib/registry.js";

const PREFIX = "augurbench";

// ---------------------------------------------------------------- cleanup on exit

const exitCleanups = new Set<() => void>();
let exitHooked = false;
function onExit(fn: () => void): () => void {
  exitCleanups.add(fn);
  if (!exitHooked) {
    exitHooked = true;
    const runAll = (): void => {
      for (const f of [...exitCleanups].reverse()) {
        try {
          f();
        } catch {
          // best effort
        }
      }
      exitCleanups.clear();
    };
    process.on("exit", runAll);
    for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
      process.once(sig, () => {
        runAll();
        process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGTERM" ? 15 : 1));
      });
    }
  }
  return () => exitCleanups.delete(fn);
}

const quiet = (cmd: string, args: string[]): void => {
  try {
    execFileSync(cmd, args, { stdio: "ignore" });
  } catch {
    // already gone
  }
};

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Removes namespaces and veths left by benchmark processes that no longer run. */
export function removeStaleNamespaces(): void {
  let list = "";
  try {
    list = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  } catch {
    return;
  }
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const m = /^augurbench-(\d+)$/.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    quiet("ip", ["netns", "del", name]);
    quiet("ip", ["link", "del", `ab${m[1]}h`]);
  }
}

// ---------------------------------------------------------------- namespace + shaping

export interface ShapedNetns {
  name: string;
  hostIf: string;
  nsIf: string;
  hostIp: string;
  nsIp: string;
  rateMbit: number;
  /** Starts `cmd` inside the namespace (ip netns exec execs it, so the pid is the command's). */
  start(cmd: string, args: string[], logFile: string): Proc;
  destroy(): Promise<void>;
}

export async function createShapedNetns(opts: { rateMbit?: number } = {}): Promise<ShapedNetns> {
  removeStaleNamespaces();
  const rateMbit = opts.rateMbit ?? 100;
  const pid = process.pid;
  const name = `${PREFIX}-${pid}`;
  const hostIf = `ab${pid}h`;
  const nsIf = `ab${pid}n`;
  if (hostIf.length > 15) throw new Error(`interface name ${hostIf} too long`);
  const octet = 100 + (pid % 150);
  const hostIp = `10.231.${octet}.1`;
  const nsIp = `10.231.${octet}.2`;
  const procs: Proc[] = [];
  const syncCleanup = (): void => {
    for (const p of procs) if (p.child.exitCode === null && p.child.signalCode === null) quiet("kill", ["-9", String(p.pid)]);
    quiet("ip", ["netns", "del", name]);
    quiet("ip", ["link", "del", hostIf]);
  };
  const unhook = onExit(syncCleanup);
  const ip = (...args: string[]): Promise<string> => runOk("ip", args);
  try {
    await ip("netns", "add", name);
    await ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf);
    await ip("link", "set", nsIf, "netns", name);
    await ip("addr", "add", `${hostIp}/30`, "dev", hostIf);
    await ip("link", "set", hostIf, "up");
    await ip("-n", name, "addr", "add", `${nsIp}/30`, "dev", nsIf);
    await ip("-n", name, "link", "set", nsIf, "up");
    await ip("-n", name, "link", "set", "lo", "up");
    // htb on the egress of each end shapes both directions.
    for (const [ns, dev] of [[null, hostIf], [name, nsIf]] as const) {
      const tc = (...args: string[]): Promise<string> => runOk("tc", [...(ns ? ["-n", ns] : []), ...args]);
      await tc("qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "10");
      await tc("class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", `${rateMbit}mbit`, "ceil", `${rateMbit}mbit`);
    }
  } catch (err) {
    syncCleanup();
    unhook();
    throw err;
  }
  return {
    name,
    hostIf,
    nsIf,
    hostIp,
    nsIp,
    rateMbit,
    start(cmd, args, logFile) {
      const p = startProcess("ip", ["netns", "exec", name, cmd, ...args], logFile);
      procs.push(p);
      return p;
    },
    async destroy() {
      for (const p of procs) await p.stop("SIGTERM", 5_000);
      syncCleanup();
      unhook();
    },
  };
}

// ---------------------------------------------------------------- latency + counting proxy

export interface ProxyStats {
  /** Bytes from the registry to clients. */
  down: number;
  /** Bytes from clients to the registry. */
  up: number;
  connections: number;
  requests: number;
}

/** One HTTP request through the proxy, times in ms since the last reset. */
export interface ProxiedRequest {
  connection: number;
  /** Request line and Range header, e.g. `GET /v2/x/blobs/sha256:… bytes=0-99`. */
  what: string;
  sentAt: number;
  /** When the last response byte before the next request (or the close) passed. */
  doneAt: number;
  bytes: number;
}

export interface LatencyProxy {
  host: string;
  port: number;
  latencyMs: number;
  stats(): ProxyStats;
  /** Every request since the last reset, in the order they were sent. */
  requests(): ProxiedRequest[];
  reset(): void;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());

/**
 * A TCP proxy on 127.0.0.1 to `target`. Each new connection waits `latencyMs`
 * before it is connected upstream, and on each connection the first bytes of
 * each new request (client bytes after the server has answered, HTTP/1.1 being
 * request/response) wait `latencyMs`: one round trip per connection and per request.
 */
export async function startLatencyProxy(target: { host: string; port: number }, latencyMs = 20): Promise<LatencyProxy> {
  let stats: ProxyStats = { down: 0, up: 0, connections: 0, requests: 0 };
  let log: ProxiedRequest[] = [];
  let epoch = performance.now();
  const sockets = new Set<Socket>();
  const server = createServer({ noDelay: true }, (client) => {
    stats.connections++;
    const connection = stats.connections;
    let current: ProxiedRequest | undefined;
    sockets.add(client);
    client.pause();
    let upstream: Socket | null = null;
    let chain: Promise<void> = sleep(latencyMs);
    let newRequest = true;
    let closed = false;
    const destroy = (): void => {
      if (closed) return;
      closed = true;
      client.destroy();
      upstream?.destroy();
      sockets.delete(client);
    };
    chain = chain.then(
      () =>
        new Promise<void>((resolve, reject) => {
          if (closed) return resolve();
          const u = connect({ host: target.host, port: target.port, noDelay: true });
          upstream = u;
          sockets.add(u);
          u.once("connect", () => resolve());
          u.once("error", reject);
          u.on("close", () => {
            sockets.delete(u);
            destroy();
          });
          u.on("data", (chunk: Buffer) => {
            stats.down += chunk.length;
            if (current) {
              current.bytes += chunk.length;
              current.doneAt = performance.now() - epoch;
            }
            newRequest = true;
            if (!client.write(chunk)) {
              u.pause();
              client.once("drain", () => u.resume());
            }
          });
          u.on("end", () => client.end());
        }),
    );
    chain.catch(destroy);
    client.on("data", (chunk: Buffer) => {
      stats.up += chunk.length;
      const delay = newRequest;
      if (newRequest) {
        stats.requests++;
        newRequest = false;
        const head = chunk.toString("latin1", 0, Math.min(chunk.length, 4096));
        const line = head.slice(0, head.indexOf("\r\n")).replace(/ HTTP\/1\.[01]$/, "");
        const range = /\r\nrange: *([^\r]*)/i.exec(head)?.[1];
        const at = performance.now() - epoch;
        current = { connection, what: range ? `${line} ${range}` : line, sentAt: at, doneAt: at, bytes: 0 };
        log.push(current);
      }
      chain = chain.then(async () => {
        if (delay) await sleep(latencyMs);
        if (!closed) upstream?.write(chunk);
      });
      chain.catch(destroy);
    });
    client.on("end", () => {
      chain = chain.then(() => {
        upstream?.end();
      });
    });
    client.on("error", destroy);
    client.on("close", destroy);
    void chain.then(() => client.resume(), destroy);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", resolve);
  });
  const addr = server.address();
  const port = typeof addr === "object" && addr ? addr.port : 0;
  return {
    host: "127.0.0.1",
    port,
    latencyMs,
    stats: () => ({ ...stats }),
    requests: () => log.map((r) => ({ ...r })),
    reset: () => {
      stats = { down: 0, up: 0, connections: 0, requests: 0 };
      log = [];
      epoch = performance.now();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- a redirecting front

export interface RedirectingFront {
  host: string;
  port: number;
  /** Redirects sent (blob GETs), and storage requests served. */
  counts(): { redirects: number; storage: number };
  close(): Promise<void>;
}

/**
 * The registry as most public ones behave (Docker Hub, ECR, GCR): every blob
 * GET is answered with a 307 to a signed storage URL, after one round trip
 * (`latencyMs`), and the storage request then goes through the latency proxy
 * like any other. Everything else passes through.
 */
export async function startRedirectingFront(upstream: { host: string; port: number }, latencyMs: number): Promise<RedirectingFront> {
  const counts = { redirects: 0, storage: 0 };
  const agent = new HttpAgent({ keepAlive: true, maxSockets: 64 });
  let self = "";
  const forward = (req: IncomingMessage, res: ServerResponse, path: string): void => {
    const headers = { ...req.headers, host: `${upstream.host}:${upstream.port}` };
    const up = httpRequest({ host: upstream.host, port: upstream.port, path, method: req.method, headers, agent }, (u) => {
      res.writeHead(u.statusCode ?? 502, u.headers);
      u.pipe(res);
    });
    up.on("error", () => res.destroy());
    req.pipe(up);
  };
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://front");
    const blob = /^\/v2\/(.+)\/blobs\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (blob && req.method === "GET") {
      counts.redirects++;
      void sleep(latencyMs).then(() => {
        res.writeHead(307, { location: `http://${self}/storage/${blob[1]}/${blob[2]}?X-Signature=${Date.now().toString(36)}`, "content-length": 0 });
        res.end();
      });
      return;
    }
    const stored = /^\/storage\/(.+)\/(sha256:[0-9a-f]{64})$/.exec(url.pathname);
    if (stored) {
      counts.storage++;
      forward(req, res, `/v2/${stored[1]}/blobs/${stored[2]}`);
      return;
    }
    forward(req, res, req.url ?? "/");
  });
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  self = `127.0.0.1:${port}`;
  return {
    host: "127.0.0.1",
    port,
    counts: () => ({ ...counts }),
    close: () =>
      new Promise<void>((resolve) => {
        agent.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

// ---------------------------------------------------------------- the whole thing

export interface SlowRegistry {
  /** host:port clients use (the proxy, or the redirecting front before it). */
  host: string;
  /** With `redirect`: the front that answers blob GETs with a redirect to storage. */
  front?: RedirectingFront;
  netns: ShapedNetns;
  proxy: LatencyProxy;
  registry: Proc;
  stop(): Promise<void>;
}

/**
 * docker-registry serving `storage` (read-only unless `writable`) inside a shaped namespace,
 * reached through the latency proxy.
 */
export async function startSlowRegistry(dir: string, storage: string, opts: { rateMbit?: number; latencyMs?: number; writable?: boolean; redirect?: boolean } = {}): Promise<SlowRegistry> {
  if (!existsSync(storage)) throw new Error(`registry storage ${storage} does not exist: build the images first`);
  mkdirSync(dir, { recursive: true });
  const netns = await createShapedNetns({ rateMbit: opts.rateMbit });
  let proxy: LatencyProxy | undefined;
  try {
    const port = 5000;
    const config = join(dir, "registry-netns.yml");
    writeFileSync(config, registryConfig({ storage, addr: `${netns.nsIp}:${port}`, readOnly: !opts.writable }));

    const registry = netns.start("docker-registry", ["serve", config], join(dir, "registry-netns.log"));
    await waitFor("registry in the namespace to listen", () => canConnect({ host: netns.nsIp, port }), 20_000, registry);
    proxy = await startLatencyProxy({ host: netns.nsIp, port }, opts.latencyMs ?? 20);
    const p = proxy;
    const front = opts.redirect ? await startRedirectingFront({ host: p.host, port: p.port }, opts.latencyMs ?? 20) : undefined;
    return {
      host: front ? `${front.host}:${front.port}` : `${p.host}:${p.port}`,
      ...(front ? { front } : {}),
      netns,
      proxy: p,
      registry,
      async stop() {
        await front?.close();
        await p.close();
        await netns.destroy();
      },
    };
  } catch (err) {
    await proxy?.close();
    await netns.destroy();
    throw err;
  }
}
