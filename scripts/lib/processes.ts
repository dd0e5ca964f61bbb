// Child processes started by tests: tracked by pid, always ended by pid.
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { createWriteStream, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mountsBelow } from "../../snapshotter/util/mountinfo.js";

export interface Proc {
  child: ChildProcess;
  pid: number;
  logFile: string;
  /** Ends the process: `signal`, then SIGKILL if it has not exited within `graceMs`. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>;
  exited: Promise<number | null>;
  log(): string;
}

export function startProcess(cmd: string, args: string[], logFile: string, env: NodeJS.ProcessEnv = process.env): Proc {
  const out = createWriteStream(logFile, { flags: "a" });
  const child = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"], env });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  if (child.pid === undefined) throw new Error(`could not start ${cmd}`);
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code, sig) => resolve(code ?? (sig ? -1 : null))));
  let done = false;
  void exited.then(() => (done = true));
  return {
    child,
    pid: child.pid,
    logFile,
    exited,
    log: () => (existsSync(logFile) ? readFileSync(logFile, "utf8") : ""),
    async stop(signal = "SIGTERM", graceMs = 10_000) {
      if (!done) {
        child.kill(signal);
        const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
        await exited;
        clearTimeout(timer);
      }
      return exited;
    },
  };
}

export function run(cmd: string, args: string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = execFile(cmd, args, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) p.stdin?.end(opts.input);
  });
}

/** Like run, but throws with the output when the command fails. */
export async function runOk(cmd: string, args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const addr = s.address();
      s.close(() => resolve(typeof addr === "object" && addr ? addr.port : 0));
    });
  });
}

export async function waitFor(what: string, check: () => Promise<boolean> | boolean, timeoutMs = 20_000, proc?: Proc): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    if (proc && proc.child.exitCode !== null) throw new Error(`${what}: process exited (${proc.child.exitCode}):\n${proc.log().slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${proc ? `:\n${proc.log().slice(-3000)}` : ""}`);
}

export function canConnect(target: string | { port: number; host: string }): Promise<boolean> {
  return new Promise((resolve) => {
    const c = typeof target === "string" ? connect(target) : connect(target.port, target.host);
    c.once("connect", () => {
      c.destroy();
      resolve(true);
    });
    c.once("error", () => resolve(false));
  });
}

/** A scratch directory under /tmp, short so overlay option strings stay small. */
export function scratchDir(prefix = "augur-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Unmounts everything mounted below `dir` (deepest first), then removes it. */
export async function removeScratch(dir: string): Promise<void> {
  await unmountBelow(dir);
  rmSync(dir, { recursive: true, force: true });
}

export async function unmountBelow(dir: string): Promise<void> {
  for (let pass = 0; pass < 5; pass++) {
    const targets = mountsBelow(dir);
    if (targets.length === 0) return;
    for (const t of targets) await run("umount", ["-l", t]);
  }
}

/** Pids of the processes whose command line (and parent pid) `match`. */
export function processesWhere(match: (args: string[], ppid: number) => boolean): number[] {
  const out: number[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const args = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses
      const ppid = Number(stat.slice(stat.lastIndexOf(") ") + 2).split(" ")[1]);
      if (match(args, ppid)) out.push(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Sends `sig` to `pid` if it still runs. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {
    // gone meanwhile
  }
}
