// Checks what an index made elsewhere says of one entry against the layer's
// own tar headers, before anything of the entry is served. The index says
// where the entry's records begin; the bytes there (verified units of the
// blob) are scanned again, and the entry they describe must be the one the
// index describes: path, type, mode, owner, size, link target, device
// numbers, mtime, xattrs, and where its data lies. So an index cannot show a
// file's bytes under another path, nor change its mode, owner or size.
import { IndexMismatchError } from "../fetch/verification.js";
import { cleanPath } from "./layer-index.js";
import { TarScanner, type TarRecord } from "./tar-scanner.js";

/** Go's archive/tar reads at most this much of an entry's PAX records; so does this check. */
const MAX_HEADER_BYTES = 1 << 20;

/** Reads uncompressed bytes [offset, offset+length) of the layer's tar stream, verified. */
export type StreamReader = (offset: number, length: number) => Promise<Buffer>;

/** What a check reads first at an entry's header: the header and, usually, its PAX records. */
export const CHECK_READ_BYTES = 4096;

/** Throws IndexMismatchError unless the tar headers at `rec.header` describe exactly `rec`. */
export async function checkEntry(read: StreamReader, rec: TarRecord, layer: string): Promise<void> {
  const at = rec.header;
  if (at === undefined) throw new IndexMismatchError(layer, `index gives no header offset for ${rec.path}`);
  let want = CHECK_READ_BYTES;
  for (;;) {
    const bytes = await read(at, want);
    const scanner = new TarScanner();
    let found: TarRecord | undefined;
    try {
      found = scanner.push(bytes)[0];
    } catch (err) {
      throw new IndexMismatchError(layer, `no tar header for ${rec.path} at ${at}: ${String(err)}`);
    }
    if (found) return compare(rec, found, at, layer);
    if (bytes.length < want || want >= MAX_HEADER_BYTES) throw new IndexMismatchError(layer, `no tar header for ${rec.path} at ${at}`);
    want *= 4;
  }
}

function compare(rec: TarRecord, tar: TarRecord, at: number, layer: string): void {
  const differs = (what: string, index: unknown, real: unknown): never => {
    throw new IndexMismatchError(layer, `index says ${rec.path} has ${what} ${JSON.stringify(index)}, its tar header ${JSON.stringify(real)}`);
  };
  if (cleanPath(tar.path) !== cleanPath(rec.path)) differs("path", rec.path, tar.path);
  for (const k of ["type", "mode", "uid", "gid", "size", "devmajor", "devminor", "mtime"] as const) {
    if (tar[k] !== rec[k]) differs(k, rec[k], tar[k]);
  }
  const link = (r: TarRecord): string => (r.type === "hardlink" ? cleanPath(r.linkname) : r.linkname);
  if (link(tar) !== link(rec)) differs("link target", rec.linkname, tar.linkname);
  const xa = Object.keys(rec.xattrs).sort();
  const xb = Object.keys(tar.xattrs).sort();
  if (xa.join("\0") !== xb.join("\0") || xa.some((k) => !(rec.xattrs[k] as Buffer).equals(tar.xattrs[k] as Buffer))) differs("xattrs", xa, xb);
  // the scanner counted from the header: its data offsets are relative to it
  const segs = (r: TarRecord, base: number): string => JSON.stringify(r.segments.map((s) => [s.offset, s.at + base, s.length]));
  if (segs(tar, at) !== segs(rec, 0)) differs("data at", segs(rec, 0), segs(tar, at));
}

/** The first way two entry lists differ (an index made elsewhere against the one built from the whole blob), or undefined. */
export function firstDifference(claimed: readonly TarRecord[], real: readonly TarRecord[]): string | undefined {
  if (claimed.length !== real.length) return `${claimed.length} entries, the tar has ${real.length}`;
  for (let i = 0; i < real.length; i++) {
    const a = claimed[i] as TarRecord;
    const b = real[i] as TarRecord;
    try {
      if (a.header !== b.header) return `entry ${i} (${b.path}) starts at ${a.header}, in the tar at ${b.header}`;
      compare(a, { ...b, segments: b.segments.map((s) => ({ ...s, at: s.at - (b.header ?? 0) })) }, b.header ?? 0, "");
    } catch (err) {
      return `entry ${i}: ${err instanceof Error ? err.message : String(err)}`;
    }
  }
  return undefined;
}

/**
 * Checks, before anything is served, that an index's entries tile the tar
 * stream the way tar lays them out: in order, each file's next entry
 * beginning right where its padded data ends. So an entry the index leaves
 * out (a whiteout, say) cannot sit between a file and the next entry
 * unnoticed; the entry checks as they are served, and the whole-layer check
 * once the layer is complete, cover what follows entries without data (their
 * own PAX records have no length the index could be held to).
 */
export function checkLayout(entries: readonly TarRecord[], uncompressedSize: number, layer: string): void {
  const fail = (why: string): never => {
    throw new IndexMismatchError(layer, why);
  };
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as TarRecord;
    const at = e.header;
    if (at === undefined || at % 512 !== 0) fail(`index gives ${e.path} no header offset on a 512-byte block`);
    const nextAt = i + 1 < entries.length ? (entries[i + 1] as TarRecord).header ?? -1 : undefined;
    const last = e.segments[e.segments.length - 1];
    const end = last ? Math.ceil((last.at + last.length) / 512) * 512 : undefined;
    if (last && (e.segments[0] as { at: number }).at < (at as number) + 512) fail(`index puts ${e.path}'s data inside its own header`);
    if (nextAt === undefined) {
      if ((end ?? (at as number) + 512) > uncompressedSize) fail(`index puts ${e.path} past the end of the tar`);
      continue;
    }
    if (nextAt <= (at as number)) fail(`index lists entry ${i + 1} before ${e.path}, the tar cannot`);
    if (end !== undefined && nextAt !== end) fail(`index says the entry after ${e.path} begins at ${nextAt}, its data ends at ${end}: ${nextAt > end ? "the index leaves something out" : "they overlap"}`);
  }
}
