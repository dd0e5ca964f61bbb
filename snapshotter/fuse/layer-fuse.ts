// fuse-native's Fuse, adjusted where augur needs more than its options allow:
// the exact mount options (it has no `use_ino`, `ro` or `negative_timeout`),
// an unmount that tries a plain unmount before a lazy one, xattr replies
// that answer ERANGE instead of overrunning a too-small buffer, and the pid of
// the process behind each operation (from augur's build of its addon,
// native/build.sh), which access traces attribute to containers.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import type FuseClass from "fuse-native";
import { Errno } from "./errno.js";

interface FuseNativeBinding {
  /** Releases the native mount state's hold on the event loop (the mount itself is gone by then). */
  fuse_native_unmount(mnt: string, thread: Buffer): void;
  /** [pid, uid] of the process whose operation is being handled now; only in augur's build. */
  fuse_native_caller?(): [number, number];
}

const require = createRequire(import.meta.url);
// augur's build of the addon sits beside its sources; compiled JS under dist/ finds it through the repository path.
const nativeDir = [fileURLToPath(new URL("./native", import.meta.url)), fileURLToPath(new URL("../../../snapshotter/fuse/native", import.meta.url))]
  .find((d) => existsSync(`${d}/build/Release/fuse.node`));
// node-gyp-build (which fuse-native loads its addon with) takes <NAME>_PREBUILD as the addon's directory.
if (nativeDir) process.env.FUSE_NATIVE_PREBUILD ??= nativeDir;
const Fuse = require("fuse-native") as typeof FuseClass;
const fuseNativeDir = dirname(require.resolve("fuse-native/package.json"));
// The same addon instance fuse-native loaded (node-gyp-build requires it, and require caches by file).
const loadAddon = createRequire(require.resolve("fuse-native"))("node-gyp-build") as (dir: string) => FuseNativeBinding;
const binding = loadAddon(fuseNativeDir);

/**
 * The pid of the process whose FUSE operation is being handled, while its
 * handler runs synchronously; undefined when the addon cannot tell (the
 * stock prebuilt binary) or outside a handler.
 */
export function fuseCaller(): number | undefined {
  const pid = binding.fuse_native_caller?.()[0];
  return pid ? pid : undefined;
}

/** Whether operations carry their caller's pid (augur's build of the addon is loaded). */
export const callerKnown = binding.fuse_native_caller !== undefined;

export class LayerFuse extends Fuse {
  constructor(
    mnt: string,
    ops: FuseClass.Operations,
    opts: FuseClass.Options,
    /** libfuse `-o` options, joined as given. */
    private readonly mountOptions: readonly string[],
    /** Detaches the mount at `mnt` (plain unmount, lazy if busy). */
    private readonly detach: (mnt: string) => Promise<void>,
  ) {
    super(mnt, ops, opts);
  }

  protected override _fuseOptions(): string {
    return "-o" + this.mountOptions.join(",");
  }

  protected override _close(cb: (err: Error | null) => void): void {
    this.detach(this.mnt).then(
      () => {
        if (this._thread) binding.fuse_native_unmount(this.mnt, this._thread);
        cb(null);
      },
      (err: unknown) => cb(err instanceof Error ? err : new Error(String(err))),
    );
  }

  protected override _op_getxattr(signal: FuseClass.Signal, path: string, name: string, valueBuf: Buffer, position: number): void {
    if (!this.ops.getxattr) return signal(Errno.ENODATA, valueBuf.buffer);
    this.ops.getxattr(path, name, position, (errno, value) => {
      if (errno !== 0) return signal(errno, valueBuf.buffer);
      if (!value) return signal(Errno.ENODATA, valueBuf.buffer);
      // a zero-sized buffer asks for the size only
      if (valueBuf.length > 0 && value.length > valueBuf.length) return signal(Errno.ERANGE, valueBuf.buffer);
      value.copy(valueBuf);
      signal(value.length, valueBuf.buffer);
    });
  }

  protected override _op_listxattr(signal: FuseClass.Signal, path: string, listBuf: Buffer): void {
    if (!this.ops.listxattr) return signal(0, listBuf.buffer);
    this.ops.listxattr(path, (errno, names) => {
      if (errno !== 0) return signal(errno, listBuf.buffer);
      const list = Buffer.concat((names ?? []).map((n) => Buffer.from(`${n}\0`)));
      if (listBuf.length > 0 && list.length > listBuf.length) return signal(Errno.ERANGE, listBuf.buffer);
      list.copy(listBuf);
      signal(list.length, listBuf.buffer);
    });
  }
}
