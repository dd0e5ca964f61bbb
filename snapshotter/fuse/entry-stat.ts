// struct stat and statfs for what a layer shows, in fuse-native's shape.
// Attributes are exactly the tar entry's (as `tar -x` as root would restore
// them); atime and ctime equal mtime because an immutable layer has no other time.
import { constants } from "node:fs";
import type Fuse from "fuse-native";
import type { EntryType } from "../layer/layer-index.js";
import type { ShownEntry } from "./layer-presentation.js";

const { S_IFREG, S_IFDIR, S_IFLNK, S_IFCHR, S_IFBLK, S_IFIFO } = constants;

const FILE_TYPE_BITS: Record<Exclude<EntryType, "hardlink">, number> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
};

const BLOCK_SIZE = 4096;
/** What ext4 reports for a small directory; tools only care that it is not 0. */
const DIR_SIZE = 4096;

/** Linux's dev_t for major/minor as the kernel's FUSE attr carries it (new_encode_dev). */
export function makeDev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

export function statOf({ entry, whiteout }: ShownEntry): Fuse.Stat {
  // fuse-native carries times as whole milliseconds in unsigned words
  const ms = Math.max(0, Math.round(entry.mtime * 1000));
  const times = { atime: ms, mtime: ms, ctime: ms };
  if (whiteout) {
    // overlayfs's whiteout: a character device 0/0 with no permission bits, as stargz-snapshotter shows it
    return { mode: S_IFCHR, uid: 0, gid: 0, size: 0, nlink: 1, ino: entry.ino, rdev: 0, blksize: BLOCK_SIZE, blocks: 0, ...times };
  }
  const type = entry.type === "hardlink" ? "file" : entry.type;
  const size = type === "dir" ? DIR_SIZE : type === "symlink" ? Buffer.byteLength(entry.linkname) : type === "file" ? entry.size : 0;
  return {
    mode: FILE_TYPE_BITS[type] | entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    size,
    nlink: entry.nlink,
    ino: entry.ino,
    rdev: type === "char" || type === "block" ? makeDev(entry.devmajor, entry.devminor) : 0,
    blksize: BLOCK_SIZE,
    blocks: Math.ceil(size / 512),
    ...times,
  };
}

/** statfs of a layer: no free space (it is read-only), block size and name length as ext4's. */
export function layerStatfs(): Fuse.Statfs {
  return { bsize: BLOCK_SIZE, frsize: BLOCK_SIZE, blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, favail: 0, fsid: 0, flag: 0, namemax: 255 };
}
