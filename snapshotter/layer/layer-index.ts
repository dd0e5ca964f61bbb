// What the FUSE layer sees of one image layer, whatever its format (eStargz
// TOC or a seekable index over a plain tar/tar+gzip/tar+zstd blob): the tar
// entries as a tree, and verified reads of file bytes fetched by range from
// the layer blob. After stargz-snapshotter's metadata.Reader.
import type { FetchPlan, FetchPriority } from "../fetch/fetch-queue.js";
import type { FetchStats } from "../fetch/fetch-stats.js";

export type EntryType = "file" | "dir" | "symlink" | "hardlink" | "char" | "block" | "fifo";

/** What a tar header (or an eStargz TOC entry) says about one entry. */
export interface EntryAttributes {
  /** Clean path from the layer root: no leading "/" or "./", no trailing "/"; "" is the root. */
  path: string;
  type: EntryType;
  /** Permission bits plus setuid/setgid/sticky (tar mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  uname: string;
  gname: string;
  /** Logical size in bytes (regular files; hardlinks report their target's size). */
  size: number;
  /** Modification time, seconds since the epoch (PAX times may be fractional). */
  mtime: number;
  /** Symlink target as stored, or the clean path a hardlink points to; "" otherwise. */
  linkname: string;
  devmajor: number;
  devminor: number;
  /** Extended attributes from PAX `SCHILY.xattr.*` records; values are raw bytes. */
  xattrs: Record<string, Buffer>;
}

/** One tar entry, as stored in the layer. Whiteouts stay raw (see below). */
export interface LayerEntry extends Readonly<Omit<EntryAttributes, "xattrs">> {
  readonly xattrs: Readonly<Record<string, Buffer>>;
  /** Inode number unique within the layer; a hardlink shares its target's. */
  readonly ino: number;
  /** Number of names for the inode (files: hardlinks + 1; dirs: 2 + subdirectories). */
  readonly nlink: number;
}

/** A verification unit of a file: reads are fetched and checked whole-unit. */
export interface FileChunk {
  /** Offset of the chunk in the file. */
  readonly offset: number;
  readonly length: number;
}

/** Parts of one file: byte ranges as the workload reads them (uncompressed). */
export interface FileRanges {
  path: string;
  ranges: readonly { offset: number; length: number }[];
}

export interface AheadOptions {
  priority: FetchPriority;
  plan?: FetchPlan;
  /** Where in its plan's predicted order the fetch comes: within a priority, lower ranks run first. */
  rank?: number;
  /** Compressed bytes of one request at most. */
  maxRequestBytes: number;
}

/** One layer's entries and verified file reads; all paths as in LayerEntry.path. */
export interface LayerIndex {
  /** Digest of the compressed layer blob, named in every error. */
  readonly digest: string;
  /** The entry at `path`, or undefined. */
  getAttr(path: string): LayerEntry | undefined;
  /** The child `name` of directory `parentPath`, or undefined. */
  lookup(parentPath: string, name: string): LayerEntry | undefined;
  /** Children of a directory, in layer order. Throws NotFoundError / FailedPreconditionError. */
  readdir(path: string): readonly LayerEntry[];
  /** Every entry in layer order (the root first). */
  entries(): Iterable<LayerEntry>;
  /**
   * Bytes [offset, offset+length) of a regular file (hardlinks read their
   * target), clipped at the end of the file. Every byte is verified against a
   * digest before it is returned; a mismatch throws LayerVerificationError.
   */
  readFile(path: string, offset: number, length: number): Promise<Buffer>;
  /** The verification unit holding `offset` of a file, so callers can align prefetches. */
  chunkFor(path: string, offset: number): FileChunk | undefined;
  /**
   * Queues fetches of the units behind these parts of these files, in this
   * order, as jobs of the fetch queue (a prefetch: nobody waits for them
   * yet). Returns the compressed bytes queued (units already held cost
   * nothing). Paths that are not regular files are skipped; `missing` hears
   * of those the layer does not have at all (a prediction that cannot be).
   */
  fetchAhead(files: readonly FileRanges[], opts: AheadOptions, missing?: (path: string) => void): number;
  /** Queues the whole layer (every unit not fetched yet), as `POST /prefetch/layer/{digest}` asks. */
  fetchAll(opts: Omit<AheadOptions, "maxRequestBytes">): void;
  /** Compressed bytes of the layer fetched (verified) so far, and in all. */
  progress(): { fetchedBytes: number; totalBytes: number };
  /** This layer's read hits and misses (fetch/fetch-stats.ts). */
  readonly fetchStats: FetchStats;
  /** Whether any entry carries extended attributes or marks a directory opaque. */
  readonly hasXattrs: boolean;
  /**
   * For an index made elsewhere: checks what it says of the entry at `path`
   * against the layer's tar headers before anything of it is served; throws
   * IndexMismatchError when they differ. Absent for indexes augur trusts.
   */
  check?(path: string): Promise<void>;
}

/** Whiteout prefix: `dir/.wh.name` hides `dir/name` of lower layers (OCI image spec). */
export const WHITEOUT_PREFIX = ".wh.";
/** Opaque marker: `dir/.wh..wh..opq` hides everything lower layers had in `dir`. */
export const OPAQUE_MARKER = ".wh..wh..opq";

export const isOpaqueMarker = (name: string): boolean => name === OPAQUE_MARKER;
export const isWhiteout = (name: string): boolean => name.startsWith(WHITEOUT_PREFIX) && name !== OPAQUE_MARKER;
/** The name a whiteout hides (`.wh.foo` -> `foo`). */
export const whiteoutTarget = (name: string): string => name.slice(WHITEOUT_PREFIX.length);



/** A "." or ".." part, an empty part, or a leading or trailing slash: what cleanPath changes. */
const UNCLEAN_PATH = /(?:^|\/)\.{1,2}(?:\/|$)|\/\/|^\/|\/$/;

/** Canonical entry path: strips "./", leading and trailing slashes, and empty or "." parts. */
export function cleanPath(p: string): string {
  if (!UNCLEAN_PATH.test(p)) return p; // most paths are clean already; this runs for every entry of every layer
  // tars made with `tar -C dir .` name every entry "./...": the rest is usually clean
  if (p.startsWith("./") && !UNCLEAN_PATH.test(p.slice(2))) return p.slice(2);
  const parts: string[] = [];
  for (const part of p.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return parts.join("/");
}
