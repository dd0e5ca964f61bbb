// A real `augur serve` process, started from the built CLI (dist/).
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { canConnect, startProcess, waitFor, type Proc } from "./processes.js";

/** The repository root: the nearest directory above this file with a package.json (works from src and dist). */
function findRepo(): string {
  for (let d = import.meta.dirname; d !== dirname(d); d = dirname(d)) {
    if (existsSync(join(d, "package.json")) && existsSync(join(d, "containerd-config.toml"))) return d;
  }
  throw new Error("cannot find the augur repository root");
}

export const REPO = findRepo();
export const AUGUR_BIN = join(REPO, "dist", "snapshotter", "cli", "main.js");

export interface Augur {
  root: string;
  socket: string;
  apiSocket: string;
  proc: Proc;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export async function startAugur(dir: string, opts: { root?: string; socket?: string; extraArgs?: string[]; logName?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Augur> {
  if (!existsSync(AUGUR_BIN)) throw new Error(`${AUGUR_BIN} is missing: run 'npm run build' first`);
  const root = opts.root ?? join(dir, "augur-root");
  const socket = opts.socket ?? join(dir, "augur.sock");
  const extra = opts.extraArgs ?? [];
  // startContainerd(dir) serves containerd's API here: augur asks it what containers run.
  const containerd = extra.includes("--containerd-address") ? [] : ["--containerd-address", join(dir, "containerd.sock")];
  // AUGUR_NODE_ARGS: node flags for augur alone (e.g. --cpu-prof --cpu-prof-dir=DIR, which NODE_OPTIONS refuses)
  const nodeArgs = (process.env.AUGUR_NODE_ARGS ?? "").split(" ").filter(Boolean);
  const proc = startProcess(process.execPath, [...nodeArgs, AUGUR_BIN, "serve", "--root", root, "--socket", socket, ...containerd, ...extra], join(dir, opts.logName ?? "augur.log"), { ...process.env, ...opts.env });
  await waitFor("augur to serve", () => canConnect(socket), 20_000, proc);
  return { root, socket, apiSocket: join(root, "api.sock"), proc, stop: (signal) => proc.stop(signal) };
}
