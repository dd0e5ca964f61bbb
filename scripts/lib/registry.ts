// A real OCI registry (Debian's docker-registry, the CNCF distribution server) on 127.0.0.1.
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { canConnect, freePort, startProcess, waitFor, type Proc } from "./processes.js";

export interface Registry {
  /** host:port, e.g. 127.0.0.1:41234 */
  host: string;
  proc: Proc;
  /** Everything the registry logged, including one access line per request. */
  log(): string;
  /**
   * The log once it has been quiet for a moment: the registry writes a
   * request's access line after its response, so a client can be answered
   * before the line reaches the log.
   */
  settledLog(): Promise<string>;
  /** Where blobs live on disk: `<storage>/docker/registry/v2/blobs/sha256/<xx>/<hex>/data`. */
  storage: string;
  stop(): Promise<void>;
  /** Starts the registry again on the same address and storage (after `stop`). */
  restart(): Promise<void>;
}

/** TLS and token authentication, as a registry people pull from has them. */
export interface RegistrySecurity {
  /** `clientcas`: CA files clients' certificates must chain to (mutual TLS). */
  tls: { certificate: string; key: string; clientcas?: string[] };
  /** Bearer tokens from a token server, or */
  token?: { realm: string; service: string; issuer: string; rootcertbundle: string };
  /** HTTP basic auth against an htpasswd file (bcrypt). */
  htpasswd?: { realm: string; path: string };
}

/** docker-registry's YAML: access log on (tests read fetched bytes from it), filesystem storage. */
export function registryConfig(opts: { storage: string; addr: string; readOnly?: boolean; security?: RegistrySecurity }): string {
  const sec = opts.security;
  return [
    "version: 0.1",
    "log:",
    "  level: info",
    "  accesslog:",
    "    disabled: false",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${opts.storage}`,
    ...(opts.readOnly
      ? ["  maintenance:", "    uploadpurging:", "      enabled: false", "    readonly:", "      enabled: true"]
      : ["  delete:", "    enabled: true"]),
    "http:",
    `  addr: ${opts.addr}`,
    ...(sec
      ? [
          "  tls:", `    certificate: ${sec.tls.certificate}`, `    key: ${sec.tls.key}`,
          ...(sec.tls.clientcas ? ["    clientcas:", ...sec.tls.clientcas.map((c) => `      - ${c}`)] : []),
          ...(sec.token ? ["auth:", "  token:", ...Object.entries(sec.token).map(([k, v]) => `    ${k}: ${v}`)] : []),
          ...(sec.htpasswd ? ["auth:", "  htpasswd:", `    realm: ${sec.htpasswd.realm}`, `    path: ${sec.htpasswd.path}`] : []),
        ]
      : []),
    "",
  ].join("\n");
}

export async function startRegistry(dir: string): Promise<Registry> {
  const port = await freePort();
  const storage = join(dir, "registry-data");
  mkdirSync(storage, { recursive: true });
  const config = join(dir, "registry.yml");
  writeFileSync(config, registryConfig({ storage, addr: `127.0.0.1:${port}` }));
  const start = async (n: number): Promise<Proc> => {
    const p = startProcess("docker-registry", ["serve", config], join(dir, n === 0 ? "registry.log" : `registry.${n}.log`));
    await waitFor("registry to listen", () => canConnect({ port, host: "127.0.0.1" }), 20_000, p);
    return p;
  };
  const procs = [await start(0)];
  const current = (): Proc => procs[procs.length - 1] as Proc;
  const log = (): string => procs.map((p) => p.log()).join("");
  return {
    host: `127.0.0.1:${port}`,
    get proc() {
      return current();
    },
    log,
    settledLog: async () => {
      const deadline = Date.now() + 5000;
      let seen = log();
      for (;;) {
        await new Promise((r) => setTimeout(r, 250));
        const now = log();
        if (now.length === seen.length || Date.now() > deadline) return now;
        seen = now;
      }
    },
    storage,
    stop: async () => {
      await current().stop();
    },
    restart: async () => {
      procs.push(await start(procs.length));
    },
  };
}
