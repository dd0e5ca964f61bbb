// Mounting one layer with FUSE, unmounting it, and clearing a dead mount a
// crashed augur left behind.
//
// Layers are immutable, so the kernel may cache names, attributes and pages for
// as long as it likes (entry/attr timeouts of a day, kernel_cache), "no such
// name" too: a layer answers a lookup only from its complete index (a layer
// still streaming makes lookups wait, layer-presentation.ts), and overlayfs
// asks every layer above a file's own for it, on every container's first
// look (python3's warm start: ~160 such lookups a container). `use_ino` makes libfuse
// pass our inode numbers through, so hardlinks share st_ino; `ro` lets the
// kernel refuse writes itself. Root mounts with allow_other directly (mount(2),
// not fusermount), so /etc/fuse.conf's user_allow_other does not matter.
import { execFile } from "node:child_process";
import { stat } from "node:fs/promises";
import { resolve } from "node:path";
import { UnavailableError, errorMessage } from "../errdefs/errors.js";
import type { LayerView } from "../layer/layer-view.js";
import { isMountPoint } from "../util/mountinfo.js";
import { logger } from "../util/logging.js";
import { LayerFuse } from "./layer-fuse.js";
import { layerOperations, timedOperations, type AccessObserver, type OperationTimer } from "./layer-operations.js";
import { LayerPresentation } from "./layer-presentation.js";

const log = logger("fuse");

/** A read may wait for a layer that is still streaming; fuse-native's 15 s default is too short. */
const DEFAULT_OP_TIMEOUT_MS = 120_000;
/** How long the kernel may keep names and attributes of an immutable layer. */
const CACHE_TIMEOUT_S = 86_400;
const MOUNT_TIMEOUT_MS = 30_000;

const MOUNT_OPTIONS = [
  "ro",
  "allow_other",
  "default_permissions",
  "use_ino",
  "kernel_cache",
  `entry_timeout=${CACHE_TIMEOUT_S}`,
  `attr_timeout=${CACHE_TIMEOUT_S}`,
  `negative_timeout=${CACHE_TIMEOUT_S}`,
  "fsname=augur",
  "subtype=augur",
];

export interface MountLayerOptions {
  /** Told of every lookup, open, read and readdir the kernel asks of the layer (paths are layer paths, "" the root). */
  onAccess?: AccessObserver;
  /** Milliseconds before an operation still waiting on the layer answers ETIMEDOUT (default 120000). */
  opTimeoutMs?: number;
  /** Told how long each operation took to answer. */
  onOperation?: OperationTimer;
}

export interface MountedLayer {
  readonly dir: string;
  /** Unmounts; lazily (detached now, gone when the last user leaves) if the mount is busy. Idempotent. */
  unmount(): Promise<void>;
}

/**
 * Mounts `view` at `dir` as a read-only FUSE filesystem that looks like the
 * layer unpacked (see layer-presentation.ts). A dead mount left at `dir` by a
 * crashed process is detached first.
 *
 * The FUSE server runs on this process's event loop. Synchronous fs calls on
 * the mount from this process (statSync, readFileSync, rmSync, ...) block the
 * very thread that must answer them and deadlock; so does spawning a child
 * with `cwd` inside the mount (libuv waits for the child's chdir and exec).
 * Use async fs calls, or a child process that changes directory itself.
 */
export async function mountLayer(dir: string, view: LayerView, opts: MountLayerOptions = {}): Promise<MountedLayer> {
  const mnt = resolve(dir);
  await unmountStale(mnt);
  const plain = layerOperations(new LayerPresentation(view), log, opts.onAccess);
  const ops = opts.onOperation ? timedOperations(plain, opts.onOperation) : plain;
  const fuse = new LayerFuse(mnt, ops, { timeout: opts.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS }, MOUNT_OPTIONS, detach);
  try {
    await withTimeout(new Promise<void>((ok, fail) => fuse.mount((err) => (err ? fail(err) : ok()))), MOUNT_TIMEOUT_MS, `mount ${mnt}`);
  } catch (err) {
    await unmountStale(mnt).catch(() => undefined);
    throw new UnavailableError(`layer ${view.digest}: mount at ${mnt} failed: ${errorMessage(err)}`, { cause: err });
  }
  log.info("mounted layer", { layer: view.digest, dir: mnt });
  let unmounting: Promise<void> | undefined;
  return {
    dir: mnt,
    unmount: () =>
      (unmounting ??= new Promise<void>((ok, fail) => fuse.unmount((err) => (err ? fail(err) : ok()))).then(() =>
        log.info("unmounted layer", { layer: view.digest, dir: mnt }),
      )),
  };
}

/**
 * Detaches a FUSE mount at `dir` whose server is gone ("transport endpoint is
 * not connected"), as a crashed augur leaves behind. Returns whether it did.
 */
export async function unmountStale(dir: string): Promise<boolean> {
  const mnt = resolve(dir);
  try {
    await stat(mnt);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOTCONN" && code !== "ECONNABORTED") return false;
  }
  log.warn("detaching dead FUSE mount", { dir: mnt });
  if ((await run("fusermount", ["-u", "-z", mnt])).code !== 0) await run("umount", ["-l", mnt]);
  if (isMountPoint(mnt)) throw new UnavailableError(`could not detach dead mount at ${mnt}`);
  return true;
}

/** Unmounts `mnt`; when it is busy, detaches it lazily so it goes once the last user leaves. */
async function detach(mnt: string): Promise<void> {
  const plain = await run("fusermount", ["-u", mnt]);
  if (plain.code === 0 || !isMountPoint(mnt)) return;
  log.warn("layer mount busy; detaching lazily", { dir: mnt, err: plain.stderr.trim() });
  const lazy = await run("fusermount", ["-u", "-z", mnt]);
  if (lazy.code !== 0 && isMountPoint(mnt)) throw new UnavailableError(`unmount ${mnt}: ${lazy.stderr.trim()}`);
}

function run(cmd: string, args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((done) => {
    execFile(cmd, args, { timeout: 60_000 }, (err, _stdout, stderr) => {
      done({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stderr });
    });
  });
}

async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_ok, fail) => {
    timer = setTimeout(() => fail(new Error(`${what}: timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
