// Access points where workloads begin reading a gzip layer. A gzip layer can
// be entered only at an access point, so a read fetches and decodes from the
// point before it: with a point every 512 KiB, python3's start-up fetches
// 15.8 MB where stargz's per-file gzip members need 10.6 MB
// (docs/benchmarks.md). A node that read a layer and still holds its blob can
// add a point at the deflate block boundary just before each place where its
// containers began reading; the next node to open the layer with that index
// fetches from there.
import { cleanPath } from "./layer-index.js";
import type { TarIndex } from "./tar-index.js";

/**
 * Where a read began: a file of the layer and the offset in it. Offset 0
 * (a file read from its start, or any entry looked up) means the entry's tar
 * header: a node checking an index it did not make reads the header too.
 */
export interface ReadStart {
  path: string;
  offset: number;
}

/**
 * Where the reads of one layer begin, as they come: a read beginning where
 * the last read of its file ended continues it; a lookup (offset 0) starts
 * at the entry's header. Keeps at most `max` starts.
 */
export class ReadStartLog {
  readonly starts: ReadStart[] = [];
  /** per path, where its last read ended */
  readonly #lastEnd = new Map<string, number>();

  constructor(private readonly max = Infinity) {}

  read(path: string, offset: number, length: number): void {
    if (this.starts.length >= this.max) return; // full: memory stays bounded
    if (!this.#lastEnd.has(path)) this.#parents(path);
    if (this.#lastEnd.get(path) !== offset) this.starts.push({ path, offset });
    this.#lastEnd.set(path, offset + length);
  }

  /** An entry looked up (it may only be stat'ed): a node checking an index it did not make reads its header. */
  lookup(path: string): void {
    this.read(path, 0, 0);
  }

  /**
   * The headers of a path's parent directories and the layer's root,
   * outermost first, each once: a node checking an index it did not make
   * checks every entry on the way to a file (tar-layer.ts). A trace holds a
   * directory's own lookup only when the kernel had not cached it, so without
   * these a published index could lack a point near `usr/share`'s header: its
   * check decoded 3.2 MB from a point 4 MiB back.
   */
  #parents(path: string): void {
    if (path === "") return;
    const parts = path.split("/");
    for (let i = 0; i < parts.length; i++) {
      const at = parts.slice(0, i).join("/");
      if (this.#lastEnd.has(at)) continue;
      this.starts.push({ path: at, offset: 0 });
      this.#lastEnd.set(at, 0);
    }
  }
}

/** A read this close after an access point gains too little from one of its own (a point costs a 32 KiB window). */
export const NEAR_ENOUGH = 64 << 10;
/** At most this many points are added to a layer at once. */
export const MAX_ADDED = 4096;

/** Uncompressed stream offsets where `reads` begin (entries the index does not hold are skipped), ascending, distinct. */
export function streamOffsets(index: TarIndex, reads: readonly ReadStart[]): number[] {
  // the index keeps the tar's own names ("./usr/..."); reads name clean paths
  const byPath = new Map(index.entries.map((e) => [cleanPath(e.path), e]));
  const out = new Set<number>();
  for (const r of reads) {
    const e = byPath.get(r.path);
    const seg = e?.segments.find((s) => r.offset >= s.offset && r.offset < s.offset + s.length);
    const at = r.offset === 0 && e?.header !== undefined ? e.header : seg && seg.at + (r.offset - seg.offset);
    if (at !== undefined) out.add(at);
  }
  return [...out].sort((a, b) => a - b);
}

/** The largest value of ascending `xs` that is <= x, or undefined. */
function floorOf(xs: readonly number[], x: number): number | undefined {
  let lo = 0;
  let hi = xs.length - 1;
  let found: number | undefined;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const v = xs[mid] as number;
    if (v <= x) {
      found = v;
      lo = mid + 1;
    } else {
      hi = mid - 1;
    }
  }
  return found;
}

/**
 * The access points to add, ascending: for each start (ascending) more than
 * `near` after the nearest point before it (existing or added), the block
 * boundary before the start, when that brings the point at least `near / 2`
 * closer. All inputs ascending uncompressed offsets.
 */
export function pointsToAdd(
  existing: readonly number[],
  starts: readonly number[],
  boundaries: readonly number[],
  near = NEAR_ENOUGH,
  max = MAX_ADDED,
): number[] {
  const added: number[] = [];
  for (const s of starts) {
    if (added.length >= max) break;
    const before = Math.max(floorOf(existing, s) ?? -Infinity, added[added.length - 1] ?? -Infinity);
    if (s - before <= near) continue;
    const b = floorOf(boundaries, s);
    if (b !== undefined && b - before >= near / 2) added.push(b);
  }
  return added;
}

/** The existing points and the added ones, ascending and distinct: the `accessAt` of a rebuilt index. */
export function mergedPoints(existing: readonly number[], added: readonly number[]): number[] {
  return [...new Set([...existing, ...added])].sort((a, b) => a - b);
}

/**
 * The points to keep in an index published for other nodes (thin-index.ts):
 * the point each start decodes from, and of the rest only one every `gap`
 * uncompressed bytes, so a read nobody predicted still finds a point within
 * `gap` before it. Inputs ascending.
 */
export function thinPoints(existing: readonly number[], starts: readonly number[], gap: number): number[] {
  const wanted = new Set<number>();
  for (const s of starts) {
    const p = floorOf(existing, s);
    if (p !== undefined) wanted.add(p);
  }
  const kept: number[] = [];
  let last = -Infinity;
  for (const p of existing) {
    if (wanted.has(p) || p - last >= gap) {
      kept.push(p);
      last = p;
    }
  }
  return kept;
}
