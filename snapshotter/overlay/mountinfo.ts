// Detaching the mounts below a directory.
// A snapshot directory may hold a mount (a lazily served layer); deleting it
// recursively while mounted would walk into the layer, so every removal
// detaches what is mounted below first.
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { errorMessage } from "../errdefs/errors.js";
import { mountsBelow } from "../util/mountinfo.js";
import { logger } from "../util/logging.js";

const log = logger("overlay");
const run = promisify(execFile);

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
