// LayerIndex over an eStargz blob: the tree comes from the TOC, and a read
// fetches only the gzip members of the chunks it covers, through the unit
// fetcher (adjacent chunks in one Range read); each is decompressed and
// checked against its chunkDigest before any byte is returned. The `.prefetch.landmark` entry marks the end of
// the files the image builder prioritised; `.no.prefetch.landmark` says there
// are none. Landmarks are reported in `prefetch`, not shown as files (as
// stargz-snapshotter hides them).
import { gunzipSync } from "node:zlib";
import { FailedPreconditionError, NotFoundError } from "../errdefs/errors.js";
import { EntryTree, TreeLayerIndex, type EntryInput } from "./entry-tree.js";
import { loadToc, type LoadedToc, type TocEntry } from "./estargz-toc.js";
import { cleanPath, type AheadOptions, type EntryType, type FileChunk, type FileRanges, type LayerIndex } from "./layer-index.js";
import type { BlobSource } from "../fetch/blob-source.js";
import { DEMAND_ONLY, type FetchQueue } from "../fetch/fetch-queue.js";
import type { FetchStats } from "../fetch/fetch-stats.js";
import { UnitFetcher } from "../fetch/unit-fetcher.js";
import { LayerVerificationError } from "../fetch/verification.js";
import { sha256Digest } from "../util/digest.js";
import { DIR_AHEAD_BYTES, SPECULATIVE_REQUEST_BYTES } from "./speculative-fetches.js";

export const PREFETCH_LANDMARK = ".prefetch.landmark";
/**
 * A read's request takes the whole chunks around it within blocks of this
 * size (unit-fetcher.ts): python3's start-up on the bench image in 12.4 MB
 * and ~10% less time than exact chunks (10.4 MB, twice the requests).
 */
const ALIGN_BYTES = 64 << 10;
export const NO_PREFETCH_LANDMARK = ".no.prefetch.landmark";

/** A chunk of a file: file bytes [offset, offset+size) are bytes [inner, inner+size) of the gzip member at blob [gzStart, gzEnd). */
export interface EStargzChunk {
  offset: number;
  size: number;
  gzStart: number;
  gzEnd: number;
  inner: number;
  digest: string | undefined;
  /** Its unit number for the fetcher: the chunk's place in blob order. */
  unit: number;
}

export interface PrefetchInfo {
  landmark: "prefetch" | "no-prefetch" | "none";
  /** Regular files before the landmark, in blob order: what the builder prioritised. */
  entries: string[];
  /** Blob bytes [0, size) hold the prioritised files; 0 without a prefetch landmark. */
  size: number;
}

const TYPES: Record<string, EntryType> = {
  dir: "dir", reg: "file", symlink: "symlink", hardlink: "hardlink", char: "char", block: "block", fifo: "fifo",
};

export class EStargzLayerIndex extends TreeLayerIndex<EStargzChunk[]> implements LayerIndex {
  readonly tocDigest: string;
  readonly prefetch: PrefetchInfo;
  /** Every chunk in blob order: the fetcher's units. */
  readonly #units: EStargzChunk[];
  readonly #fetcher: UnitFetcher<Buffer>;
  readonly #speculative: boolean;

  private constructor(digest: string, blob: BlobSource, loaded: LoadedToc, queue: FetchQueue | undefined, stats: FetchStats | undefined) {
    const { inputs, prefetch } = fromToc(digest, loaded.toc.entries, loaded.footer.tocOffset);
    super(digest, new EntryTree(inputs, (i) => i.content));
    this.tocDigest = loaded.tocDigest;
    this.prefetch = prefetch;
    this.#speculative = queue !== undefined;
    this.#units = inputs.flatMap((i) => i.content ?? []).sort((a, b) => a.gzStart - b.gzStart || a.inner - b.inner);
    this.#units.forEach((c, i) => (c.unit = i));
    const units = this.#units;
    this.#fetcher = new UnitFetcher<Buffer>(
      {
        digest,
        count: units.length,
        bounds: (i) => {
          const c = units[i] as EStargzChunk;
          return { start: c.gzStart, end: c.gzEnd };
        },
        verify: (i, member) => this.#verify(units[i] as EStargzChunk, member),
        // chunks sharing a gzip member keep it once
        cacheable: (i) => (units[i] as EStargzChunk).inner === 0,
      },
      blob,
      queue ?? DEMAND_ONLY,
      { ...(stats ? { stats } : {}), alignBytes: queue ? ALIGN_BYTES : 0 },
    );
  }

  /**
   * Opens an eStargz layer; `tocDigest` is the layer's toc.digest annotation
   * when the manifest has one. With `queue` (prefetch/scheduler.ts), reads
   * fetch ahead beside themselves.
   */
  static async open(blob: BlobSource, opts: { digest: string; tocDigest?: string; queue?: FetchQueue; stats?: FetchStats }): Promise<EStargzLayerIndex> {
    return new EStargzLayerIndex(opts.digest, blob, await loadToc(blob, opts.digest, opts.tocDigest), opts.queue, opts.stats);
  }

  fetchAll(opts: Omit<AheadOptions, "maxRequestBytes">): void {
    this.#fetcher.aheadAll({ ...opts, maxRequestBytes: 1 << 20 });
  }

  progress(): { fetchedBytes: number; totalBytes: number } {
    return this.#fetcher.progress();
  }

  /** This layer's read hits and misses. */
  get fetchStats(): FetchStats {
    return this.#fetcher.layerStats;
  }

  /** Compressed bytes requested from the blob for file reads. */
  get fetchedBytes(): number {
    return this.#fetcher.fetchedBytes;
  }

  fetchAhead(files: readonly FileRanges[], opts: AheadOptions, missing?: (path: string) => void): number {
    const ids: number[] = [];
    const seen = new Set<number>();
    let bytes = 0;
    for (const f of files) {
      const file = this.tree.content(f.path);
      if (!file) missing?.(f.path);
      for (const c of file?.content ?? []) {
        if (seen.has(c.unit) || this.#fetcher.held(c.unit)) continue;
        if (!f.ranges.some((r) => r.offset < c.offset + c.size && c.offset < r.offset + r.length)) continue;
        seen.add(c.unit);
        ids.push(c.unit);
        if (c.inner === 0 || !seen.has(c.unit - 1)) bytes += c.gzEnd - c.gzStart;
      }
    }
    if (ids.length) this.#fetcher.ahead({ ids, ...opts });
    return bytes;
  }

  chunkFor(path: string, offset: number): FileChunk | undefined {
    const c = this.tree.content(path)?.content?.find((k) => k.offset <= offset && offset < k.offset + k.size);
    return c ? { offset: c.offset, length: c.size } : undefined;
  }

  async readFile(path: string, offset: number, length: number): Promise<Buffer> {
    const file = this.tree.content(path);
    if (!file) {
      if (this.tree.get(path)) throw new FailedPreconditionError(`layer ${this.digest}: ${path} is not a regular file`);
      throw new NotFoundError(`layer ${this.digest}: ${path} not found`);
    }
    const end = Math.min(file.entry.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const chunks = (file.content ?? []).filter((c) => c.offset < end && c.offset + c.size > offset);
    // beside misses only (a read whose chunks were fetched ahead needs no guessing), worked out
    // before the read's own fetches make its chunks look held
    const missed = this.#speculative && chunks.some((c) => !this.#fetcher.held(c.unit));
    const ahead = missed ? this.#siblings(path) : [];
    const wanted = this.#fetcher.get(chunks.map((c) => c.unit));
    this.#speculate(ahead); // once the read's own fetches have started
    const datas = await Promise.all(wanted);
    const out = Buffer.alloc(end - offset);
    chunks.forEach((c, i) => {
      const data = datas[i] as Buffer;
      const lo = Math.max(offset, c.offset);
      const hi = Math.min(end, c.offset + c.size);
      data.copy(out, lo - offset, lo - c.offset, hi - c.offset);
    });
    return out;
  }

  /**
   * A small file's directory's other small files, within DIR_AHEAD_BYTES
   * (speculative-fetches.ts). Of the read-ahead kinds the plain-layer reader
   * uses, this is the one that pays on eStargz: its 4 MiB chunks already
   * bring a file's rest, and the bytes after a miss are mostly other
   * directories' files (docs/benchmarks.md); blocks of ALIGN_BYTES around a
   * miss take its close neighbours in the same request.
   */
  #siblings(path: string): EStargzChunk[] {
    const { siblings } = this.aheadOf(path);
    let left = DIR_AHEAD_BYTES;
    const out: EStargzChunk[] = [];
    for (const c of siblings.flatMap((p) => this.tree.content(p)?.content ?? [])) {
      if (this.#fetcher.held(c.unit)) continue;
      left -= c.gzEnd - c.gzStart;
      if (left < 0) break;
      out.push(c);
    }
    return out;
  }

  /** Queues speculative fetches of `chunks` (most useful first) as one batch; each request checks again when it starts. */
  #speculate(chunks: EStargzChunk[]): void {
    if (chunks.length === 0) return;
    this.#fetcher.ahead({ ids: chunks.map((c) => c.unit), priority: "speculative", maxRequestBytes: SPECULATIVE_REQUEST_BYTES });
  }

  /** A chunk's bytes from its gzip member, checked against its TOC digest. */
  #verify(c: EStargzChunk, member: Buffer): Buffer {
    if (!c.digest) throw new LayerVerificationError(this.digest, `chunk at ${c.gzStart} has no digest in the TOC`);
    let plain: Buffer;
    try {
      plain = gunzipSync(member, { maxOutputLength: Math.max(c.inner + c.size, MAX_MEMBER_BYTES) });
    } catch (err) {
      if (err instanceof RangeError || (err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") {
        throw new LayerVerificationError(this.digest, `chunk at ${c.gzStart} inflates to more than ${Math.max(c.inner + c.size, MAX_MEMBER_BYTES)} bytes`);
      }
      throw new LayerVerificationError(this.digest, `chunk at ${c.gzStart} does not decompress: ${String(err)}`);
    }
    const bytes = plain.subarray(c.inner, c.inner + c.size);
    const got = sha256Digest(bytes);
    if (bytes.length !== c.size || got !== c.digest) {
      throw new LayerVerificationError(this.digest, `chunk at ${c.gzStart} digest is ${got}, TOC says ${c.digest}`);
    }
    return bytes;
  }
}

/**
 * Bytes a chunk's gzip member may inflate to (or what the chunk needs, if
 * more): a writer packs small files into members of about its chunk size
 * (4 MiB by default), so a member inflating to far more is a bomb, not a
 * layer.
 */
const MAX_MEMBER_BYTES = 64 << 20;

/**
 * Where each entry's gzip member ends: where the next member of the blob
 * starts, by offset (the TOC itself after the last). estargz's initFields
 * takes the next entry's offset in TOC order instead, which a TOC listing
 * entries out of blob order turns into ends before starts, and good files
 * into unreadable ones; gzip members do not overlap, so offset order is the
 * blob's order whatever the TOC's.
 */
export function memberEnds(entries: readonly TocEntry[], tocOffset: number): number[] {
  const starts = [...new Set(entries.filter((e) => e.offset && !e.innerOffset).map((e) => e.offset as number))].sort((a, b) => a - b);
  return entries.map((e) => {
    const at = e.offset ?? 0;
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((starts[mid] as number) <= at) lo = mid + 1;
      else hi = mid;
    }
    return Math.min(starts[lo] ?? tocOffset, tocOffset);
  });
}

/** Turns TOC entries into tree inputs with chunk lists, as estargz's initFields does. */
function fromToc(digest: string, entries: TocEntry[], tocOffset: number): { inputs: EntryInput<EStargzChunk[]>[]; prefetch: PrefetchInfo } {
  const next = memberEnds(entries, tocOffset);
  const inputs: EntryInput<EStargzChunk[]>[] = [];
  const prefetch: PrefetchInfo = { landmark: "none", entries: [], size: 0 };
  const unames = new Map<number, string>();
  const gnames = new Map<number, string>();
  let file: EntryInput<EStargzChunk[]> | undefined;
  entries.forEach((e, i) => {
    if (e.type === "chunk") {
      if (file) file.content?.push(chunkOf(e, file.size, next[i] as number));
      return;
    }
    const path = cleanPath(e.name);
    if (path === PREFETCH_LANDMARK || path === NO_PREFETCH_LANDMARK) {
      prefetch.landmark = path === PREFETCH_LANDMARK ? "prefetch" : "no-prefetch";
      prefetch.size = path === PREFETCH_LANDMARK ? (e.offset ?? 0) : 0;
      if (path === NO_PREFETCH_LANDMARK) prefetch.entries = [];
      file = undefined;
      return;
    }
    const type = TYPES[e.type];
    if (!type) throw new LayerVerificationError(digest, `TOC entry ${e.name} has unknown type ${e.type}`);
    const uid = e.uid ?? 0;
    const gid = e.gid ?? 0;
    if (e.userName) unames.set(uid, e.userName);
    if (e.groupName) gnames.set(gid, e.groupName);
    const input: EntryInput<EStargzChunk[]> = {
      path, type, mode: e.mode ?? 0, uid, gid, uname: e.userName || (unames.get(uid) ?? ""), gname: e.groupName || (gnames.get(gid) ?? ""),
      size: type === "file" ? (e.size ?? 0) : 0, mtime: e.modtime ? Date.parse(e.modtime) / 1000 : 0,
      linkname: e.linkName ?? "", devmajor: e.devMajor ?? 0, devminor: e.devMinor ?? 0,
      xattrs: Object.fromEntries(Object.entries(e.xattrs ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64")])),
      content: type === "file" ? [] : undefined,
    };
    if (type === "file" && input.size > 0) {
      const first = chunkOf(e, input.size, next[i] as number);
      // a single-chunk file may carry only the whole-file digest
      if (!first.digest && (!e.chunkSize || e.chunkSize >= input.size)) first.digest = e.digest;
      input.content?.push(first);
      if (prefetch.landmark === "none") prefetch.entries.push(path);
    }
    file = type === "file" ? input : undefined;
    inputs.push(input);
  });
  if (prefetch.landmark !== "prefetch") prefetch.entries = [];
  return { inputs, prefetch };
}


function chunkOf(e: TocEntry, fileSize: number, gzEnd: number): EStargzChunk {
  const offset = e.chunkOffset ?? 0;
  return {
    offset, size: e.chunkSize || fileSize - offset, gzStart: e.offset ?? 0, gzEnd, inner: e.innerOffset ?? 0, digest: e.chunkDigest, unit: -1,
  };
}
