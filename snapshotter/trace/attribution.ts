// Which container a FUSE request came from. The FUSE addon gives the caller's
// pid (fuse_get_context); the pid's mount namespace has the container's root
// filesystem mounted at "/", an overlay whose upperdir is the active
// snapshot augur made for it (<root>/s/<id>/fs). So: pid -> mount namespace ->
// root overlay upperdir -> snapshot, which names the containerd namespace and
// key (the container ID for ctr, nerdctl and CRI). This needs no cgroup
// layout, no containerd round trip and no mount per container, and every
// process of a container (exec'd ones too) shares its mount namespace.
//
// Cost (docs/tracing.md): per new pid, a readlink of /proc/<pid>/ns/mnt
// (~14 us) and, outside augur's own namespace, a read of its mountinfo. The
// caller is blocked in its syscall while augur answers, so its /proc entry
// exists. /proc is not one of augur's FUSE mounts: reading it from this
// thread cannot deadlock.
import { readFileSync, readlinkSync } from "node:fs";

/** The overlay upperdir of the root filesystem of `pid`'s mount namespace, or undefined (not a container, or gone). */
export type RootUpperOf = (pid: number) => string | undefined;

/**
 * How long a pid's answer is kept. Namespace inode numbers are reused as soon
 * as a namespace is gone (the next container often gets the last one's), so
 * answers are kept per pid, not per namespace; pids are not reused this fast.
 */
const PID_TTL_MS = 2_000;
const MAX_PIDS = 4096;

/** mountinfo escapes space, tab, newline and backslash as octal. */
const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The upperdir of the overlay mounted at "/" in a mountinfo text, if any. */
export function rootOverlayUpper(mountinfo: string): string | undefined {
  for (const line of mountinfo.split("\n")) {
    const fields = line.split(" ");
    if (fields[4] !== "/") continue;
    const dash = fields.indexOf("-");
    if (dash < 0 || fields[dash + 1] !== "overlay") continue;
    const options = fields[dash + 3] ?? "";
    for (const opt of options.split(",")) if (opt.startsWith("upperdir=")) return unescape(opt.slice("upperdir=".length));
  }
  return undefined;
}

/**
 * Looks callers up through /proc, caching per pid (briefly), so the FUSE hot
 * path does a Map lookup almost always.
 */
export function procRootUpper(proc = "/proc"): RootUpperOf {
  // Processes in augur's own mount namespace (containerd, people at a shell)
  // are never in a container. In any other namespace the root is read, and
  // "not a container" is not kept: runc's init works in the container's new
  // namespace before it pivots into the root filesystem, so a namespace's
  // first requests come while "/" is still the host's.
  let host: string | undefined;
  try {
    host = readlinkSync(`${proc}/self/ns/mnt`);
  } catch {
    host = undefined;
  }
  const byPid = new Map<number, { upper: string; at: number }>();
  return (pid) => {
    const now = Date.now();
    const hit = byPid.get(pid);
    if (hit && now - hit.at <= PID_TTL_MS) return hit.upper;
    let upper: string | undefined;
    try {
      if (readlinkSync(`${proc}/${pid}/ns/mnt`) === host) return undefined;
      upper = rootOverlayUpper(readFileSync(`${proc}/${pid}/mountinfo`, "utf8"));
    } catch {
      return undefined; // gone already
    }
    if (!upper) return undefined;
    if (byPid.size >= MAX_PIDS) byPid.clear();
    byPid.set(pid, { upper, at: now });
    return upper;
  };
}
