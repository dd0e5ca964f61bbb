// LayerIndex over a plain OCI layer (tar, tar+gzip, tar+zstd) and its
// seekable TarIndex: the tree comes from the index's entries, file bytes from
// verified span reads of the blob (span-reader.ts). Sparse files read their
// holes as zeros without fetching anything.
import { FailedPreconditionError, NotFoundError } from "../errdefs/errors.js";
import type { FetchStats } from "../fetch/fetch-stats.js";
import { EntryTree, TreeLayerIndex } from "./entry-tree.js";
import type { AheadOptions, FileChunk, FileRanges, LayerEntry, LayerIndex } from "./layer-index.js";
import type { BlobSource } from "../fetch/blob-source.js";
import { SpanReader, type AheadRanges, type SpanReaderOptions } from "./span-reader.js";
import { DIR_AHEAD_BYTES, FILE_AHEAD_BYTES } from "./speculative-fetches.js";
import type { TarIndex } from "./tar-index.js";
import type { DataSegment, TarRecord } from "./tar-scanner.js";
import { CHECK_READ_BYTES, checkEntry } from "./entry-check.js";

/** An entry a workload looks up without reading it, and where in the plan it comes (the rank of the file read after it), if known. */
export interface HeaderLookup {
  path: string;
  rank?: number;
}

/** Lookups whose ranks fall in one window of this many files go in one request, at the window's start. */
const HEADER_RANK_WINDOW = 16;
/** Places of a plan fetched "soon" (the prefetcher's first 64 files); lookups after them go "later". */
const SOON_RANKS = 64;

export interface TarLayerOptions extends SpanReaderOptions {
  /** The index was made elsewhere (the registry): check each entry against the tar headers before serving it. */
  untrusted?: boolean;
}

export class TarLayerIndex extends TreeLayerIndex<DataSegment[]> implements LayerIndex {
  readonly reader: SpanReader;
  readonly untrusted: boolean;
  /** The index's records, as it says them. */
  readonly records: readonly TarRecord[];
  readonly #checks = new Map<string, Promise<void>>();
  /** Entries whose headers were queued already. */
  readonly #headersQueued = new Set<string>();

  constructor(index: TarIndex, blob: BlobSource, opts: TarLayerOptions = {}) {
    super(index.digest, new EntryTree<DataSegment[], TarRecord>(index.entries, (e) => e.segments));
    this.reader = new SpanReader(index, blob, opts);
    this.untrusted = opts.untrusted ?? false;
    this.records = index.entries;
    if (this.untrusted) this.check = (path) => this.#check(path);
  }

  check?: (path: string) => Promise<void>;

  /** An index made elsewhere may claim a layer has no xattrs (hiding an opaque directory): not believed. */
  override get hasXattrs(): boolean {
    return this.untrusted || super.hasXattrs;
  }

  /** Checks the entry at `path` (and a hardlink's target) once; concurrent asks share the check. */
  #check(path: string): Promise<void> {
    let p = this.#checks.get(path);
    if (!p) {
      p = (async () => {
        const rec = this.tree.record(path) as TarRecord | undefined;
        if (!rec) return; // absent, or a directory only implied: nothing the index can have got wrong
        const read = (offset: number, length: number): Promise<Buffer> => this.reader.read(offset, length, [], { followMiss: false });
        await checkEntry(read, rec, this.digest);
        if (rec.type === "hardlink") await this.#check(rec.linkname);
      })();
      p.catch(() => this.#checks.delete(path)); // a fetch failure is asked again; a mismatch ends the index's use anyway
      this.#checks.set(path, p);
    }
    return p;
  }

  /**
   * Queues the tar headers the entry checks of `lookups` (and of their
   * parent directories, and the layer's root) will read, so lookups a
   * workload is known to make find them fetched: each at its place in the
   * plan (its rank, the file the workload reads after it), lookups close
   * together in one request; those with no place, and the root, first.
   * Returns the compressed bytes queued.
   */
  fetchHeadersAhead(lookups: readonly HeaderLookup[], opts: AheadOptions): number {
    const groups = new Map<number, string[]>();
    for (const l of lookups) {
      const window = l.rank === undefined ? 0 : Math.floor(l.rank / HEADER_RANK_WINDOW) * HEADER_RANK_WINDOW;
      groups.set(window, [...(groups.get(window) ?? []), l.path]);
    }
    if (!groups.has(0)) groups.set(0, []);
    let bytes = 0;
    for (const [rank, paths] of [...groups].sort((a, b) => a[0] - b[0])) {
      // the layer's root is looked up first by every container, in every layer
      const ranges = this.#headerRanges(rank === 0 ? ["", ...paths] : paths);
      // as the plan's files: the first SOON_RANKS places "soon", the rest "later"
      if (ranges.length) bytes += this.reader.fetchAhead(ranges, { ...opts, rank: Math.max(rank, opts.rank ?? 0), ...(rank >= SOON_RANKS ? { priority: "later" } : {}) });
    }
    return bytes;
  }

  /** Where the entry checks of `paths` and of their parent directories read ("": the root's), each entry once over the layer's life. */
  #headerRanges(paths: readonly string[]): { offset: number; length: number }[] {
    const ranges: { offset: number; length: number }[] = [];
    const add = (at: string): void => {
      this.#headersQueued.add(at);
      const header = (this.tree.record(at) as TarRecord | undefined)?.header;
      if (header !== undefined) ranges.push({ offset: header, length: CHECK_READ_BYTES });
    };
    for (const p of paths) {
      if (p === "") {
        if (!this.#headersQueued.has("")) add("");
        continue;
      }
      for (let at: string = p; at !== "" && !this.#headersQueued.has(at); at = at.includes("/") ? at.slice(0, at.lastIndexOf("/")) : "") add(at);
    }
    return ranges;
  }

  async readFile(path: string, offset: number, length: number): Promise<Buffer> {
    const { entry, segments } = this.#file(path);
    const end = Math.min(entry.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const out = Buffer.alloc(end - offset); // holes stay zero
    const parts = segments.filter((s) => s.offset < end && s.offset + s.length > offset);
    const ahead = this.reader.speculative ? this.#ahead(path) : [];
    await Promise.all(
      parts.map(async (s, k) => {
        const lo = Math.max(offset, s.offset);
        const hi = Math.min(end, s.offset + s.length);
        const data = await this.reader.read(s.at + (lo - s.offset), hi - lo, k === parts.length - 1 ? ahead : []);
        data.copy(out, lo - offset);
      }),
    );
    return out;
  }

  /** The rest of the file and its directory's other files, as ranges of the uncompressed stream (speculative-fetches.ts). */
  #ahead(path: string): AheadRanges[] {
    const { rest, siblings } = this.aheadOf(path);
    const rangesOf = (p: string): { offset: number; length: number }[] =>
      (this.tree.content(p)?.content ?? []).map((s) => ({ offset: s.at, length: s.length }));
    const out: AheadRanges[] = [];
    if (rest) out.push({ ranges: rangesOf(path), maxBytes: FILE_AHEAD_BYTES });
    if (siblings.length) out.push({ ranges: siblings.flatMap(rangesOf), maxBytes: DIR_AHEAD_BYTES });
    return out;
  }

  get fetchStats(): FetchStats {
    return this.reader.fetchStats;
  }

  fetchAll(opts: Omit<AheadOptions, "maxRequestBytes">): void {
    this.reader.fetchAll(opts);
  }

  progress(): { fetchedBytes: number; totalBytes: number } {
    return this.reader.progress();
  }

  fetchAhead(files: readonly FileRanges[], opts: AheadOptions, missing?: (path: string) => void): number {
    const stream: { offset: number; length: number }[] = [];
    for (const f of files) {
      const file = this.tree.content(f.path);
      if (!file) missing?.(f.path);
      const segments = file?.content;
      if (!segments) continue;
      for (const r of f.ranges) {
        for (const s of segments) {
          const lo = Math.max(r.offset, s.offset);
          const hi = Math.min(r.offset + r.length, s.offset + s.length);
          if (hi > lo) stream.push({ offset: s.at + (lo - s.offset), length: hi - lo });
        }
      }
    }
    return this.reader.fetchAhead(stream, opts);
  }

  chunkFor(path: string, offset: number): FileChunk | undefined {
    const file = this.tree.content(path);
    if (!file || offset < 0 || offset >= file.entry.size) return undefined;
    const segments = file.content ?? [];
    const seg = segments.find((s) => s.offset <= offset && offset < s.offset + s.length);
    if (!seg) {
      // a hole: from the end of the previous segment to the start of the next
      const prev = segments.filter((s) => s.offset + s.length <= offset).at(-1);
      const next = segments.find((s) => s.offset > offset);
      const lo = prev ? prev.offset + prev.length : 0;
      return { offset: lo, length: (next ? next.offset : file.entry.size) - lo };
    }
    const span = this.reader.unitAt(seg.at + (offset - seg.offset));
    const lo = Math.max(seg.offset, seg.offset + (span.out - seg.at));
    const hi = Math.min(seg.offset + seg.length, seg.offset + (span.end - seg.at));
    return { offset: lo, length: hi - lo };
  }

  #file(path: string): { entry: LayerEntry; segments: DataSegment[] } {
    const file = this.tree.content(path);
    if (file) return { entry: file.entry, segments: file.content ?? [] };
    if (this.tree.get(path)) throw new FailedPreconditionError(`layer ${this.digest}: ${path} is not a regular file`);
    throw new NotFoundError(`layer ${this.digest}: ${path} not found`);
  }
}
