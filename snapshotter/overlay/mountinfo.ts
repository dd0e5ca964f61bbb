// Mounts below a directory, from /proc/self/mountinfo, and detaching them.
// A snapshot directory may hold a mount (a lazily served layer); deleting it
// recursively while mounted would walk into the layer, so every removal
// detaches what is mounted below first.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { promisify } from "node:util";
import { errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/trace.js";

const log = logger("overlay");
const run = promisify(execFile);

/** Mount points at or below `dir`, deepest first. */
export function mountsBelow(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : `${dir}/`;
  const points = readFileSync("/proc/self/mountinfo", "utf8")
    .split("\n")
    .map((line) => line.split(" ")[4])
    .filter((p): p is string => p !== undefined)
    .map((p) => p.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below `dir` (a dead FUSE mount answers nothing, so lazy). */
export async function detachBelow(dir: string): Promise<void> {
  for (const point of mountsBelow(dir)) {
    try {
      await run("umount", ["-l", point]);
      log.info("detached mount", { path: point });
    } catch (err) {
      log.warn("could not detach mount", { path: point, error: errorMessage(err) });
    }
  }
}
