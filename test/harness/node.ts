// A node of the tests' own: an augur and the containerd that uses it, in
// `<dir>/<name>`, and a lazy pull through it. Several of them side by side make
// the host or the cluster the cache and peer tests need.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { startAugur, type Augur } from "./augur.js";
import { startContainerd, type Containerd } from "./containerd.js";
import { run } from "./processes.js";

export interface Node {
  augur: Augur;
  containerd: Containerd;
}

/** Starts augur (with `augurArgs`; root `opts.root` or `<dir>/<name>/augur-root`) and its containerd. */
export async function startNode(dir: string, name: string, augurArgs: string[], opts: { root?: string } = {}): Promise<Node> {
  const nodeDir = join(dir, name);
  mkdirSync(nodeDir, { recursive: true });
  const augur = await startAugur(nodeDir, { ...(opts.root ? { root: opts.root } : {}), extraArgs: augurArgs });
  return { augur, containerd: await startContainerd(nodeDir, augur.socket) };
}

/** Stops nodes, each containerd before its augur. */
export async function stopNodes(nodes: readonly (Node | undefined)[]): Promise<void> {
  for (const n of nodes) {
    await n?.containerd.stop();
    await n?.augur.stop();
  }
}

/** `ctr-remote images rpull --plain-http --snapshotter augur REF` through a containerd. */
export function rpull(containerd: Containerd, ref: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--plain-http", "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
}
