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
  stop(): Promise<void>;
}

export async function startRegistry(dir: string): Promise<Registry> {
  const port = await freePort();
  const storage = join(dir, "registry-data");
  mkdirSync(storage, { recursive: true });
  const config = join(dir, "registry.yml");
  writeFileSync(
    config,
    [
      "version: 0.1",
      "log:",
      "  level: info",
      "  accesslog:",
      "    disabled: false",
      "storage:",
      "  filesystem:",
      `    rootdirectory: ${storage}`,
      "  delete:",
      "    enabled: true",
      "http:",
      `  addr: 127.0.0.1:${port}`,
      "",
    ].join("\n"),
  );
  const proc = startProcess("docker-registry", ["serve", config], join(dir, "registry.log"));
  await waitFor("registry to listen", () => canConnect({ port, host: "127.0.0.1" }), 20_000, proc);
  return {
    host: `127.0.0.1:${port}`,
    proc,
    log: () => proc.log(),
    stop: async () => {
      await proc.stop();
    },
  };
}
