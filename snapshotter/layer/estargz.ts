// LayerIndex over an eStargz blob: the tree comes from the TOC, and a read
// fetches only the gzip members of the chunks it covers (adjacent chunks in
// one Range read), decompresses each and checks it against its chunkDigest
// before any byte is returned. The `.prefetch.landmark` entry marks the end of
// the files the image builder prioritised; `.no.prefetch.landmark` says there
// are none. Landmarks are reported in `prefetch`, not shown as files (as
// stargz-snapshotter hides them).
import { gunzipSync } from "node:zlib";
import { LRUCache } from "lru-cache";
import { FailedPreconditionError, NotFoundError, UnavailableError } from "../errdefs/errors.js";
import { EntryTree, TreeLayerIndex, type EntryInput } from "./entry-tree.js";
import { loadToc, type LoadedToc, type TocEntry } from "./estargz-toc.js";
import { cleanPath, type EntryType, type FileChunk, type LayerIndex } from "./layer-index.js";
import { type BlobSource } from "../fetch/blob-source.js";
import { LayerVerificationError, verifiedItem } from "../fetch/verification.js";
import { sha256Digest } from "../util/digest.js";
import { DIR_AHEAD_BYTES, FILE_AHEAD_BYTES, READ_AHEAD_BYTES, SPECULATIVE_REQUEST_BYTES, speculativeRequests, type SpeculativeFetches } from "./speculative-fetches.js";

export const PREFETCH_LANDMARK = ".prefetch.landmark";
export const NO_PREFETCH_LANDMARK = ".no.prefetch.landmark";

/** A chunk of a file: file bytes [offset, offset+size) are bytes [inner, inner+size) of the gzip member at blob [gzStart, gzEnd). */
export interface EStargzChunk {
  offset: number;
  size: number;
  gzStart: number;
  gzEnd: number;
  inner: number;
  digest: string | undefined;
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
  /** Compressed bytes requested from the blob for file reads. */
  fetchedBytes = 0;
  readonly #blob: BlobSource;
  // Small: the kernel's page cache keeps what FUSE served; this holds read-ahead until it is asked for.
  readonly #cache = new LRUCache<string, Buffer>({ maxSize: 32 << 20, sizeCalculation: (b) => Math.max(1, b.length) });
  readonly #inflight = new Map<string, Promise<Buffer>>();
  /** Every chunk with a digest, in blob order, for read-ahead. */
  readonly #byOffset: EStargzChunk[];
  readonly #speculative: SpeculativeFetches | undefined;

  private constructor(digest: string, blob: BlobSource, loaded: LoadedToc, speculative: SpeculativeFetches | undefined) {
    const { inputs, prefetch } = fromToc(digest, loaded.toc.entries, loaded.footer.tocOffset);
    super(digest, new EntryTree(inputs, (i) => i.content));
    this.tocDigest = loaded.tocDigest;
    this.#blob = blob;
    this.prefetch = prefetch;
    this.#speculative = speculative;
    this.#byOffset = inputs
      .flatMap((i) => i.content ?? [])
      .filter((c) => c.digest !== undefined)
      .sort((a, b) => a.gzStart - b.gzStart || a.inner - b.inner);
  }

  /**
   * Opens an eStargz layer; `tocDigest` is the layer's toc.digest annotation
   * when the manifest has one. With `speculative`, reads fetch ahead beside
   * themselves (speculative-fetches.ts).
   */
  static async open(blob: BlobSource, opts: { digest: string; tocDigest?: string; speculative?: SpeculativeFetches }): Promise<EStargzLayerIndex> {
    return new EStargzLayerIndex(opts.digest, blob, await loadToc(blob, opts.digest, opts.tocDigest), opts.speculative);
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
    const ahead = this.#speculative ? [...this.#readAhead(chunks), ...this.#ahead(path)] : []; // before the read's own fetches make its chunks look held
    const wanted = this.#chunks(chunks);
    this.#speculate(ahead);
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

  /** The rest of the file and its directory's other files, within their budgets (speculative-fetches.ts). */
  #ahead(path: string): EStargzChunk[] {
    const { rest, siblings } = this.aheadOf(path);
    const within = (chunks: EStargzChunk[], maxBytes: number): EStargzChunk[] => {
      let left = maxBytes;
      const out: EStargzChunk[] = [];
      for (const c of chunks) {
        if (this.#held(c)) continue;
        left -= c.gzEnd - c.gzStart;
        if (left < 0) break;
        out.push(c);
      }
      return out;
    };
    const chunksOf = (p: string): EStargzChunk[] => this.tree.content(p)?.content ?? [];
    return [...(rest ? within(chunksOf(path), FILE_AHEAD_BYTES) : []), ...within(siblings.flatMap(chunksOf), DIR_AHEAD_BYTES)];
  }

  #held(c: EStargzChunk): boolean {
    return this.#cache.has(chunkKey(c)) || this.#inflight.has(chunkKey(c));
  }

  /** Chunks that follow the last missing one of `chunks` back to back, within READ_AHEAD_BYTES, up to one already held. */
  #readAhead(chunks: EStargzChunk[]): EStargzChunk[] {
    const missing = chunks.filter((c) => !this.#held(c));
    const last = missing[missing.length - 1];
    if (!last) return [];
    let lo = 0;
    let hi = this.#byOffset.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((this.#byOffset[mid] as EStargzChunk).gzStart <= last.gzStart) lo = mid + 1;
      else hi = mid;
    }
    const out: EStargzChunk[] = [];
    let end = last.gzEnd;
    for (let i = lo; i < this.#byOffset.length; i++) {
      const c = this.#byOffset[i] as EStargzChunk;
      if (c.gzStart !== end || c.gzEnd - last.gzEnd > READ_AHEAD_BYTES || this.#held(c)) break;
      out.push(c);
      end = c.gzEnd;
    }
    return out;
  }

  /** Queues speculative fetches of `chunks` (most useful first) as one batch; each request checks again when it starts. */
  #speculate(chunks: EStargzChunk[]): void {
    const queue = this.#speculative;
    if (!queue || chunks.length === 0) return;
    const order = [...new Set(chunks)];
    const byStart = [...order].sort((a, b) => a.gzStart - b.gzStart || a.inner - b.inner);
    const id = new Map(byStart.map((c, i) => [c, i]));
    const bounds = (i: number): { start: number; end: number } => {
      const c = byStart[i] as EStargzChunk;
      return { start: c.gzStart, end: c.gzEnd };
    };
    queue.add(
      speculativeRequests(order.map((c) => id.get(c) as number), bounds, SPECULATIVE_REQUEST_BYTES).map((run) => async () => {
        await Promise.allSettled(this.#chunks(run.map((i) => byStart[i] as EStargzChunk).filter((c) => !this.#held(c))));
      }),
    );
  }

  /** Verified chunk data: cached, in flight, or fetched with neighbours in one read. */
  #chunks(chunks: EStargzChunk[]): Promise<Buffer>[] {
    const result: Promise<Buffer>[] = [];
    let run: number[] = [];
    const flush = (): void => {
      if (run.length === 0) return;
      const ids = run;
      run = [];
      const fetched = this.#fetch(ids.map((i) => chunks[i] as EStargzChunk));
      ids.forEach((id, k) => {
        const key = chunkKey(chunks[id] as EStargzChunk);
        const p = verifiedItem(fetched, k).finally(() => this.#inflight.delete(key));
        p.catch(() => undefined); // read-ahead nobody awaits; a reader that does reports it
        this.#inflight.set(key, p);
        result[id] = p;
      });
    };
    chunks.forEach((c, i) => {
      const key = chunkKey(c);
      const ready = this.#cache.get(key) ?? this.#inflight.get(key);
      if (ready) {
        flush();
        result[i] = Promise.resolve(ready);
        return;
      }
      const prev = run.length ? chunks[run[run.length - 1] as number] : undefined;
      if (prev && prev.gzEnd !== c.gzStart) flush();
      run.push(i);
    });
    flush();
    return result;
  }

  /** Chunks in one read; a chunk that fails its digest fails alone (read-ahead must not spoil a good read). */
  async #fetch(chunks: EStargzChunk[]): Promise<(Buffer | LayerVerificationError)[]> {
    const start = (chunks[0] as EStargzChunk).gzStart;
    const end = (chunks[chunks.length - 1] as EStargzChunk).gzEnd;
    let data: Buffer;
    try {
      data = await this.#blob.read(start, end - start);
    } catch (err) {
      throw new UnavailableError(`layer ${this.digest}: fetching bytes ${start}-${end}`, { cause: err });
    }
    this.fetchedBytes += end - start;
    if (data.length < end - start) throw new UnavailableError(`layer ${this.digest}: short read at ${start}`);
    return chunks.map((c) => {
      const member = data.subarray(c.gzStart - start, c.gzEnd - start);
      try {
        const bytes = this.#verify(c, member);
        this.#cache.set(chunkKey(c), bytes);
        if (c.inner === 0) this.#blob.verified?.(c.gzStart, member);
        return bytes;
      } catch (err) {
        if (err instanceof LayerVerificationError) return err;
        throw err;
      }
    });
  }

  /** A chunk's bytes from its gzip member, checked against its TOC digest. */
  #verify(c: EStargzChunk, member: Buffer): Buffer {
    if (!c.digest) throw new LayerVerificationError(this.digest, `chunk at ${c.gzStart} has no digest in the TOC`);
    let plain: Buffer;
    try {
      plain = gunzipSync(member);
    } catch (err) {
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

/** Turns TOC entries into tree inputs with chunk lists, as estargz's initFields does. */
function fromToc(digest: string, entries: TocEntry[], tocOffset: number): { inputs: EntryInput<EStargzChunk[]>[]; prefetch: PrefetchInfo } {
  // the gzip member of a chunk ends where the next member with data starts
  const next = new Array<number>(entries.length);
  let last = tocOffset;
  for (let i = entries.length - 1; i >= 0; i--) {
    const e = entries[i] as TocEntry;
    next[i] = last;
    if (e.offset && !e.innerOffset) last = e.offset;
  }
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

const chunkKey = (c: EStargzChunk): string => `${c.gzStart}:${c.inner}`;

function chunkOf(e: TocEntry, fileSize: number, gzEnd: number): EStargzChunk {
  const offset = e.chunkOffset ?? 0;
  return {
    offset, size: e.chunkSize || fileSize - offset, gzStart: e.offset ?? 0, gzEnd, inner: e.innerOffset ?? 0, digest: e.chunkDigest,
  };
}
