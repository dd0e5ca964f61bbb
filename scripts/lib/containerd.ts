// A real containerd (Debian's package) configured from the repo's
// containerd-config.toml, with its own root, state and socket under `dir`.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "./augur.js";
import { canConnect, processesWhere, run, runOk, signal, startProcess, unmountBelow, waitFor, type Proc } from "./processes.js";

export interface Containerd {
  address: string;
  proc: Proc;
  /** Runs `ctr --address ... <args>`; resolves with its output and exit code. */
  ctr(args: string[], timeoutMs?: number): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Like ctr, but throws (with the output) on a non-zero exit. */
  ctrOk(args: string[], timeoutMs?: number): Promise<string>;
  /**
   * Waits until containerd answers a call through `snapshotter` (default
   * augur): after a snapshotter restarts, containerd's connection to the old
   * process backs off before it dials again, and calls fail meanwhile.
   */
  reachSnapshotter(snapshotter?: string, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `proxies`: more proxy snapshotters by name and socket (benchmarks run stargz-snapshotter beside augur).
 * `cri`: run the CRI plugin (Kubernetes' API on the same socket) with containerd-config.toml's
 * CRI settings, registries configured from `hostsDir` (containerd's config_path), and pods'
 * sandbox (pause) container from `sandboxImage`.
 */
export async function startContainerd(dir: string, augurSocket: string, opts: { proxies?: Record<string, string>; cri?: { hostsDir: string; sandboxImage?: string } } = {}): Promise<Containerd> {
  const address = join(dir, "containerd.sock");
  const config = join(dir, "containerd.toml");
  const more = Object.entries(opts.proxies ?? {}).map(([name, sock]) => `  [proxy_plugins.${name}]\n    type = "snapshot"\n    address = "${sock}"\n`).join("");
  const base = readFileSync(join(REPO, "containerd-config.toml"), "utf8")
    .replace(/^(\s*address\s*=\s*)"\/run\/augur\/augur\.sock"/m, `$1"${augurSocket}"`)
    .replace(/^\[proxy_plugins\]\n/m, `[proxy_plugins]\n${more}`);
  if (!base.includes(augurSocket)) throw new Error("containerd-config.toml has no [proxy_plugins.augur] address line to point at the test's augur");
  writeFileSync(
    config,
    [
      `root = "${join(dir, "containerd-root")}"`,
      `state = "${join(dir, "containerd-state")}"`,
      // CRI slows start-up: only the tests of Kubernetes' path run it.
      opts.cri ? "" : `disabled_plugins = ["io.containerd.grpc.v1.cri"]`,
      base,
      // restrict_oom_score_adj: this VM's root may not lower oom_score_adj (runc's
      // nsexec gets EACCES for the pause container's -998), as in rootless setups.
      opts.cri ? `[plugins."io.containerd.grpc.v1.cri"]\n  restrict_oom_score_adj = true\n${opts.cri.sandboxImage ? `  sandbox_image = "${opts.cri.sandboxImage}"\n` : ""}` : "",
      opts.cri ? `[plugins."io.containerd.grpc.v1.cri".registry]\n  config_path = "${opts.cri.hostsDir}"\n` : "",
      "[grpc]",
      `  address = "${address}"`,
      "[ttrpc]",
      `  address = "${address}.ttrpc"`,
      "",
    ].join("\n"),
  );
  const proc = startProcess("containerd", ["--config", config], join(dir, "containerd.log"));
  await waitFor("containerd to serve", () => canConnect(address), 30_000, proc);
  const ctr = (args: string[], timeoutMs?: number) => run("ctr", ["--address", address, ...args], { timeoutMs });
  const ctrOk = (args: string[], timeoutMs?: number) => runOk("ctr", ["--address", address, ...args], { timeoutMs });
  return {
    address,
    proc,
    ctr,
    ctrOk,
    reachSnapshotter: (snapshotter = "augur", timeoutMs = 60_000) =>
      waitFor(`containerd to reach the ${snapshotter} snapshotter`, async () => (await ctr(["snapshots", "--snapshotter", snapshotter, "ls"])).code === 0, timeoutMs),
    async stop() {
      // Tasks outlive containerd (their shims keep running): end them first.
      const namespaces = (await ctr(["namespaces", "ls", "-q"])).stdout.split("\n").filter(Boolean);
      for (const ns of namespaces) {
        for (const id of (await ctr(["-n", ns, "tasks", "ls", "-q"])).stdout.split("\n").filter(Boolean)) {
          await ctr(["-n", ns, "tasks", "kill", "-s", "SIGKILL", id]);
          await ctr(["-n", ns, "tasks", "delete", "-f", id]);
        }
        for (const id of (await ctr(["-n", ns, "containers", "ls", "-q"])).stdout.split("\n").filter(Boolean)) {
          await ctr(["-n", ns, "containers", "delete", id]);
        }
      }
      await proc.stop();
      // a task that ended while containerd stopped can leave its shim behind (seen twice in a few
      // dozen bench runs): this containerd's shims, and what still runs under them, end by pid
      for (const shim of processesWhere((args) => (args[0] ?? "").endsWith("containerd-shim-runc-v2") && args.includes(address))) {
        for (const child of processesWhere((_, ppid) => ppid === shim)) signal(child, "SIGKILL");
        signal(shim, "SIGKILL");
      }
      await unmountBelow(join(dir, "containerd-state"));
    },
  };
}
