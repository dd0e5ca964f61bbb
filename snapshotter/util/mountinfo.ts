// Mount points, read from /proc/self/mountinfo. Reading it never touches a
// mount, so it is safe for a FUSE mount this very process serves (a stat of
// it from the main thread would wait on ourselves).
import { readFileSync } from "node:fs";

/** Every mount point of this process's namespace, octal escapes (\040 ...) decoded. */
export function mountPoints(): string[] {
  return readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
}

/** Mount points at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  return [...new Set(mountPoints().filter((p) => p === dir || p.startsWith(prefix)))].sort((a, b) => b.length - a.length);
}

export function isMountPoint(path: string): boolean {
  return mountPoints().includes(path);
}
