// A native copy of a lazily served layer: once the whole verified blob is in
// the cache, it is unpacked into `s/<id>/native` exactly as containerd's
// applier would (overlayfs whiteouts: a 0/0 character device per deleted
// name, `trusted.overlay.opaque=y` on opaque directories), so new containers
// get a plain directory as their lower layer and stop paying for FUSE.
// GNU tar does the unpacking: it already handles owners, modes, mtimes,
// xattrs, hardlinks, devices and refuses `..` members. Built under
// `native.tmp` and renamed, so a crash never leaves half a copy in use.
import { execFile } from "node:child_process";
import { readdir, rename, rm, unlink } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { compressionOf } from "../layer/decoders.js";
import { OPAQUE_MARKER, WHITEOUT_PREFIX } from "../layer/layer-index.js";

const run = promisify(execFile);

/** Beside `native`: the bytes the copy holds, so the bound counts it after a restart. */
export const NATIVE_SIZE_FILE = "native.size";
/** Beside `native`: why unpacking failed; a layer that has it is not unpacked again, even after a restart. */
export const NATIVE_FAILED_FILE = "native.failed";
/** Unpacked bytes per compressed byte beyond which a layer is not copied (real layers: 2-10). */
export const MAX_INFLATION = 50;
/** Layers unpacking to less than this are copied whatever their ratio (a few small text files compress well). */
const SMALL_LAYER_BYTES = 64 << 20;

/**
 * Why a layer must not be copied natively, or undefined when it may: a
 * layer unpacking to far more than its blob (a gzip of zeros) would fill
 * the disk for a copy FUSE serves as well, and all copies together keep
 * within `limit`.
 */
export function nativeCopyRefusal(layer: { unpacked: number; compressed: number }, copies: { used: number; limit: number }): string | undefined {
  if (layer.unpacked > SMALL_LAYER_BYTES && layer.unpacked > MAX_INFLATION * layer.compressed) {
    return `it unpacks to ${layer.unpacked} bytes from ${layer.compressed}, more than ${MAX_INFLATION} times its blob`;
  }
  if (copies.used + layer.unpacked > copies.limit) {
    return `native copies would take ${copies.used + layer.unpacked} bytes, over their ${copies.limit}-byte bound (--native-copy-size)`;
  }
  return undefined;
}

/** Unpacks; `signal` stops tar (augur shutting down) and removes what it wrote. */
export async function unpackNativeCopy(blobPath: string, mediaType: string, target: string, signal?: AbortSignal): Promise<void> {
  const tmp = `${target}.tmp`;
  await rm(tmp, { recursive: true, force: true });
  await run("mkdir", ["-m", "0755", tmp]);
  try {
    const decompress = { gzip: ["-z"], zstd: ["--zstd"], none: [] }[compressionOf(mediaType)];
    await run("nice", ["-n", "10", "tar", "-x", ...decompress, "-f", blobPath, "-C", tmp,
      "--numeric-owner", "--same-owner", "--same-permissions", "--xattrs", "--xattrs-include=*", "--delay-directory-restore"], { maxBuffer: 1 << 20, signal });
    await convertWhiteouts(tmp);
    await rename(tmp, target);
  } catch (err) {
    await rm(tmp, { recursive: true, force: true });
    throw err;
  }
}

/** Turns OCI whiteout files into the form overlayfs reads. */
async function convertWhiteouts(dir: string): Promise<void> {
  for (const ent of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, ent.name);
    if (ent.name === OPAQUE_MARKER) {
      await unlink(path);
      await run("setfattr", ["-n", "trusted.overlay.opaque", "-v", "y", dir]);
    } else if (ent.name.startsWith(WHITEOUT_PREFIX)) {
      await unlink(path);
      await run("mknod", ["-m", "0", join(dir, ent.name.slice(WHITEOUT_PREFIX.length)), "c", "0", "0"]);
    } else if (ent.isDirectory()) {
      await convertWhiteouts(path);
    }
  }
}
