// The part of fuse-native 2.2.6 (CommonJS, untyped) that augur uses. Handlers
// answer through a callback whose first argument is 0 or a negative errno.
// The underscore members are fuse-native internals that fuse-mount.ts
// overrides; they are pinned to this version (see package.json).
declare module "fuse-native" {
  namespace Fuse {
    type Done = (errno: number) => void;

    /** What fuse-native packs into struct stat; times in milliseconds since the epoch. */
    interface Stat {
      mode: number;
      uid: number;
      gid: number;
      size: number;
      dev?: number;
      nlink: number;
      ino: number;
      rdev: number;
      blksize: number;
      blocks: number;
      atime: number;
      mtime: number;
      ctime: number;
    }

    interface Statfs {
      bsize: number;
      frsize: number;
      blocks: number;
      bfree: number;
      bavail: number;
      files: number;
      ffree: number;
      favail: number;
      fsid: number;
      flag: number;
      namemax: number;
    }

    /** Operation handlers; a handler left out answers ENOSYS (getattr: EPERM). */
    interface Operations {
      init?(cb: Done): void;
      statfs?(path: string, cb: (errno: number, statfs?: Statfs) => void): void;
      getattr?(path: string, cb: (errno: number, stat?: Stat) => void): void;
      readdir?(path: string, cb: (errno: number, names?: string[], stats?: Stat[]) => void): void;
      readlink?(path: string, cb: (errno: number, target?: string) => void): void;
      open?(path: string, flags: number, cb: (errno: number, fd?: number) => void): void;
      read?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErrno: number) => void): void;
      release?(path: string, fd: number, cb: Done): void;
      getxattr?(path: string, name: string, position: number, cb: (errno: number, value?: Buffer) => void): void;
      listxattr?(path: string, cb: (errno: number, names?: string[]) => void): void;
      write?(path: string, fd: number, buf: Buffer, len: number, pos: number, cb: (bytesOrErrno: number) => void): void;
      create?(path: string, mode: number, cb: (errno: number, fd?: number) => void): void;
      truncate?(path: string, size: number, cb: Done): void;
      ftruncate?(path: string, fd: number, size: number, cb: Done): void;
      utimens?(path: string, atime: number, mtime: number, cb: Done): void;
      chown?(path: string, uid: number, gid: number, cb: Done): void;
      chmod?(path: string, mode: number, cb: Done): void;
      mknod?(path: string, mode: number, dev: number, cb: Done): void;
      setxattr?(path: string, name: string, value: Buffer, position: number, flags: number, cb: Done): void;
      removexattr?(path: string, name: string, cb: Done): void;
      unlink?(path: string, cb: Done): void;
      rename?(src: string, dest: string, cb: Done): void;
      link?(src: string, dest: string, cb: Done): void;
      symlink?(src: string, dest: string, cb: Done): void;
      mkdir?(path: string, mode: number, cb: Done): void;
      rmdir?(path: string, cb: Done): void;
    }

    interface Options {
      /** Milliseconds before an unanswered operation is answered ETIMEDOUT (default 15000). */
      timeout?: number;
      mkdir?: boolean;
      force?: boolean;
    }

    /** fuse-native's answer function inside the `_op_*` dispatchers: an errno or result, then payload. */
    type Signal = (res: number, ...payload: unknown[]) => void;
  }

  class Fuse {
    constructor(mnt: string, ops: Fuse.Operations, opts?: Fuse.Options);
    readonly mnt: string;
    readonly ops: Fuse.Operations;
    /** The native per-mount state fuse_native_unmount needs. */
    protected _thread: Buffer | null;
    mount(cb: (err: Error | null) => void): void;
    unmount(cb: (err: Error | null) => void): void;
    /** The `-o...` argument fuse-native builds from its options (its one entry point for mount options). */
    protected _fuseOptions(): string;
    /** nanoresource's close step: detach the mount, then release native state. */
    protected _close(cb: (err: Error | null) => void): void;
    protected _op_getxattr(signal: Fuse.Signal, path: string, name: string, valueBuf: Buffer, position: number): void;
    protected _op_listxattr(signal: Fuse.Signal, path: string, listBuf: Buffer): void;
  }

  export = Fuse;
}
