// What a FUSE mount serves of one layer: the LayerIndex questions, asked
// asynchronously. A layer met for the first time is still streaming when it is
// mounted; its view makes a lookup wait until the entry has streamed past (or
// the stream ended without it) and a read wait until its bytes have arrived.
// A layer whose index is complete answers at once (`viewOf`).
import type { LayerEntry, LayerIndex } from "./layer-index.js";

export interface LayerView {
  /** Digest of the compressed layer blob, named in every error. */
  readonly digest: string;
  /** The raw entry at `path` (whiteouts as stored in tar), or undefined. */
  getAttr(path: string): Promise<LayerEntry | undefined>;
  /** The child `name` of directory `parentPath`, or undefined. */
  lookup(parentPath: string, name: string): Promise<LayerEntry | undefined>;
  /** Children of a directory, in layer order. Throws NotFoundError / FailedPreconditionError. */
  readdir(path: string): Promise<readonly LayerEntry[]>;
  /** Verified bytes of a regular file, clipped at its end (see LayerIndex.readFile). */
  readFile(path: string, offset: number, length: number): Promise<Buffer>;
  /** Whether any entry has extended attributes or is an opaque marker (LayerIndex.hasXattrs). */
  hasXattrs(): Promise<boolean>;
}

/** The view of a complete index. */
export function viewOf(index: LayerIndex): LayerView {
  return {
    digest: index.digest,
    getAttr: async (path) => index.getAttr(path),
    lookup: async (parentPath, name) => index.lookup(parentPath, name),
    readdir: async (path) => index.readdir(path),
    readFile: (path, offset, length) => index.readFile(path, offset, length),
    hasXattrs: async () => index.hasXattrs,
  };
}
