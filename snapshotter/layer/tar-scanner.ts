// An incremental tar header scanner: fed the uncompressed layer stream in
// chunks, it reports each entry with the offset of its data, parsing only the
// header blocks and skipping data without copying. Written here rather than
// using tar-stream because the index needs what tar-stream drops or hides:
// binary xattr values (security.capability), GNU and PAX sparse maps, and
// exact data offsets. Handles ustar, GNU (long names, base-256 numbers,
// old sparse) and PAX (local and global records, sparse 0.0/0.1/1.0).
import { InvalidArgumentError } from "../errdefs/errors.js";
import type { EntryAttributes, EntryType } from "./layer-index.js";

/** A piece of a sparse file's data: `length` bytes at file offset `offset` stored at stream offset `at`. */
export interface DataSegment {
  offset: number;
  at: number;
  length: number;
}

/** One archive entry, with where its data sits in the uncompressed stream. */
export interface TarRecord extends EntryAttributes {
  /** Data segments in file order; holes between them read as zeros. Empty for non-files. */
  segments: DataSegment[];
  /**
   * Stream offset of the entry's first header block (its own PAX or GNU
   * long-name records included, global PAX records not): where a reader
   * scans the entry again to check an index it was not the author of.
   */
  header?: number;
}

const BLOCK = 512;
/**
 * Bytes a PAX record set, a GNU long name or link, a sparse map, or all
 * global PAX records together may hold (Go's archive/tar allows 1 MiB too).
 * They are buffered whole, so a header claiming gigabytes in a small gzip
 * would otherwise take that much memory.
 */
export const MAX_SPECIAL_BYTES = 1 << 20;
// Types whose size field never announces data (as Go's archive/tar reads them).
const HEADER_ONLY = new Set(["1", "2", "3", "4", "5", "6"]);
const pad = (n: number): number => Math.ceil(n / BLOCK) * BLOCK;
const TYPES: Record<string, EntryType> = {
  "0": "file", "\0": "file", "7": "file", "S": "file", "1": "hardlink", "2": "symlink",
  "3": "char", "4": "block", "5": "dir", "D": "dir", "6": "fifo",
};

function cstring(b: Buffer, start: number, len: number): string {
  const end = b.indexOf(0, start);
  return b.toString("utf8", start, end < 0 || end > start + len ? start + len : end);
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
function num(b: Buffer, start: number, len: number): number {
  const first = b[start] ?? 0;
  if (first & 0x80) {
    let v = first & 0x7f;
    for (let i = 1; i < len; i++) v = v * 256 + (b[start + i] ?? 0);
    return v;
  }
  const s = b.toString("latin1", start, start + len).replace(/[\0 ]+.*$/s, "").trim();
  return s === "" ? 0 : parseInt(s, 8);
}

/** PAX records `len key=value\n`; values are kept as raw bytes. Repeated keys keep every value. */
function parsePax(data: Buffer): [string, Buffer][] {
  const out: [string, Buffer][] = [];
  let pos = 0;
  while (pos < data.length) {
    const sp = data.indexOf(0x20, pos);
    if (sp < 0) break;
    const len = parseInt(data.toString("latin1", pos, sp), 10);
    if (!(len > 0) || pos + len > data.length) throw new InvalidArgumentError("tar: malformed PAX record");
    const eq = data.indexOf(0x3d, sp);
    out.push([data.toString("utf8", sp + 1, eq), data.subarray(eq + 1, pos + len - 1)]);
    pos += len;
  }
  return out;
}

type State =
  | { kind: "header" }
  | { kind: "meta"; which: "pax" | "global" | "longname" | "longlink" | "gnusparse"; size: number; need: number }
  | { kind: "sparsemap"; header: Partial<TarRecord>; dataSize: number }
  | { kind: "skip"; left: number };

export class TarScanner {
  #pos = 0; // stream offset of the next byte pushed
  #buf: Buffer[] = []; // bytes of an incomplete header or metadata block
  #buffered = 0;
  #state: State = { kind: "header" };
  #pax = new Map<string, Buffer[]>();
  #global = new Map<string, Buffer[]>();
  #longname: string | undefined;
  #longlink: string | undefined;
  #gnuSparse: { header: Buffer; ext: Buffer[] } | undefined;
  #ended = false;
  /** Where the records of the entry being read began. */
  #entryStart: number | undefined;

  /** True once the two zero blocks (or the data's end) were seen. */
  get ended(): boolean {
    return this.#ended;
  }

  /** True between entries: the stream did not stop inside a header or an entry's data. */
  get atBoundary(): boolean {
    return this.#state.kind === "header" && this.#buffered === 0;
  }

  /** Consumes the next bytes of the stream and returns the entries they completed. */
  push(chunk: Buffer): TarRecord[] {
    const out: TarRecord[] = [];
    let off = 0;
    while (off < chunk.length) {
      const st = this.#state;
      if (st.kind === "skip") {
        const n = Math.min(st.left, chunk.length - off);
        st.left -= n;
        off += n;
        this.#pos += n;
        if (st.left === 0) this.#state = { kind: "header" };
        continue;
      }
      if (st.kind === "header" && this.#buffered === 0) this.#entryStart ??= this.#pos;
      const need = st.kind === "header" ? BLOCK : st.kind === "meta" ? st.need : this.#sparseMapNeed();
      const take = Math.min(need - this.#buffered, chunk.length - off);
      this.#buf.push(chunk.subarray(off, off + take));
      this.#buffered += take;
      off += take;
      this.#pos += take;
      if (this.#buffered < need) continue;
      const block = Buffer.concat(this.#buf);
      this.#buf = [];
      this.#buffered = 0;
      const rec = this.#complete(block);
      if (rec) {
        rec.header = this.#entryStart;
        this.#entryStart = undefined;
        out.push(rec);
      }
    }
    return out;
  }

  #sparseMapNeed(): number {
    // PAX 1.0 sparse: the map (decimal lines) precedes the data, padded to blocks.
    // Read block by block until it parses completely.
    return this.#buffered + BLOCK;
  }

  #complete(block: Buffer): TarRecord | undefined {
    const st = this.#state;
    if (st.kind === "header") return this.#header(block);
    if (st.kind === "sparsemap") return this.#sparseMap(block, st);
    if (st.kind !== "meta") return undefined;
    const data = block.subarray(0, st.size);
    this.#state = { kind: "header" };
    switch (st.which) {
      case "pax":
      case "global":
        for (const [k, v] of parsePax(data)) {
          // a global record replaces the one before it; a local set may repeat keys (sparse maps)
          if (st.which === "pax") this.#pax.set(k, [...(this.#pax.get(k) ?? []), v]);
          else this.#global.set(k, [v]);
        }
        if (st.which === "global") this.#checkGlobalBytes();
        break;
      case "longname":
        this.#longname = cstring(data, 0, data.length);
        break;
      case "longlink":
        this.#longlink = cstring(data, 0, data.length);
        break;
      case "gnusparse":
        // continuation blocks of an old GNU sparse header
        if (this.#gnuSparse) this.#gnuSparse.ext.push(block);
        if (this.#gnuSparse && this.#gnuSparse.ext.length * BLOCK > MAX_SPECIAL_BYTES) {
          throw new InvalidArgumentError(`tar: GNU sparse header before offset ${this.#pos} has more than ${MAX_SPECIAL_BYTES} bytes of extensions`);
        }
        if (block[504] && this.#gnuSparse) this.#state = { kind: "meta", which: "gnusparse", size: BLOCK, need: BLOCK };
        else return this.#emitGnuSparse();
        break;
    }
    return undefined;
  }

  #header(h: Buffer): TarRecord | undefined {
    if (h.every((b) => b === 0)) {
      this.#ended = true;
      this.#entryStart = undefined;
      return undefined;
    }
    let sum = 0;
    for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : (h[i] as number);
    if (sum !== num(h, 148, 8)) throw new InvalidArgumentError(`tar: bad header checksum at offset ${this.#pos - BLOCK}`);
    this.#ended = false;
    const flag = String.fromCharCode(h[156] ?? 0);
    const headerSize = num(h, 124, 12);
    const meta = { x: "pax", g: "global", L: "longname", K: "longlink" } as const;
    if (flag in meta) {
      if (flag === "g") this.#entryStart = undefined; // global records belong to no one entry
      if (headerSize > MAX_SPECIAL_BYTES) {
        throw new InvalidArgumentError(`tar: ${meta[flag as keyof typeof meta]} header at offset ${this.#pos - BLOCK} claims ${headerSize} bytes, more than the ${MAX_SPECIAL_BYTES} allowed`);
      }
      this.#state = { kind: "meta", which: meta[flag as keyof typeof meta], size: headerSize, need: pad(headerSize) };
      if (headerSize === 0) this.#state = { kind: "header" };
      return undefined;
    }
    const type = TYPES[flag];
    // PAX `size` overrides the header's for files of 8 GiB and more
    const stored = HEADER_ONLY.has(flag) ? 0 : Number(this.#paxString("size") ?? headerSize);
    const size = stored;
    if (!type) {
      // GNU volume headers, multi-volume continuations and the like carry no entry
      this.#state = size > 0 ? { kind: "skip", left: pad(size) } : { kind: "header" };
      this.#resetPending();
      this.#entryStart = undefined;
      return undefined;
    }
    if (flag === "S") {
      this.#gnuSparse = { header: h, ext: [] };
      if (h[482]) {
        this.#state = { kind: "meta", which: "gnusparse", size: BLOCK, need: BLOCK };
        return undefined;
      }
      return this.#emitGnuSparse();
    }
    const rec = this.#record(h, type, size);
    const major = this.#paxString("GNU.sparse.major");
    if (major === "1" && type === "file") {
      this.#state = { kind: "sparsemap", header: rec, dataSize: size };
      return undefined;
    }
    const map = this.#paxSparse0();
    rec.segments = map ? this.#place(map, this.#pos) : type === "file" && rec.size > 0 ? [{ offset: 0, at: this.#pos, length: rec.size }] : [];
    if (map) rec.size = Number(this.#paxString("GNU.sparse.size") ?? this.#paxString("GNU.sparse.realsize") ?? rec.size);
    this.#state = size > 0 ? { kind: "skip", left: pad(size) } : { kind: "header" };
    this.#resetPending();
    return rec;
  }

  #emitGnuSparse(): TarRecord {
    const { header, ext } = this.#gnuSparse as { header: Buffer; ext: Buffer[] };
    this.#gnuSparse = undefined;
    const map: [number, number][] = [];
    const read = (b: Buffer, start: number, count: number): void => {
      for (let i = 0; i < count; i++) {
        const o = start + i * 24;
        if (b[o] === 0) return;
        map.push([num(b, o, 12), num(b, o + 12, 12)]);
      }
    };
    read(header, 386, 4);
    for (const b of ext) read(b, 0, 21);
    const size = num(header, 124, 12);
    const rec = this.#record(header, "file", size);
    rec.size = num(header, 483, 12);
    rec.segments = this.#place(map, this.#pos);
    this.#state = size > 0 ? { kind: "skip", left: pad(size) } : { kind: "header" };
    this.#resetPending();
    return rec;
  }

  #sparseMap(block: Buffer, st: { header: Partial<TarRecord>; dataSize: number }): TarRecord | undefined {
    const nums = block.toString("latin1").split("\n");
    const count = Number(nums[0]);
    if (nums.length < 2 || !(nums.length - 1 >= 1 + 2 * count)) {
      if (block.length >= MAX_SPECIAL_BYTES) throw new InvalidArgumentError(`tar: PAX sparse map before offset ${this.#pos} is longer than ${MAX_SPECIAL_BYTES} bytes`);
      this.#buf = [block]; // keep reading blocks until the whole map is in
      this.#buffered = block.length;
      return undefined;
    }
    const map: [number, number][] = [];
    for (let i = 0; i < count; i++) map.push([Number(nums[1 + 2 * i]), Number(nums[2 + 2 * i])]);
    const rec = st.header as TarRecord;
    rec.segments = this.#place(map, this.#pos);
    rec.size = Number(this.#paxString("GNU.sparse.realsize") ?? this.#paxString("GNU.sparse.size") ?? rec.size);
    const left = pad(st.dataSize) - block.length;
    this.#state = left > 0 ? { kind: "skip", left } : { kind: "header" };
    this.#resetPending();
    return rec;
  }

  /** Stored segments follow each other in the archive from `at`. */
  #place(map: [number, number][], at: number): DataSegment[] {
    const segs: DataSegment[] = [];
    for (const [offset, length] of map) {
      if (length > 0) segs.push({ offset, at, length });
      at += length;
    }
    return segs;
  }

  #checkGlobalBytes(): void {
    let n = 0;
    for (const [k, values] of this.#global) for (const v of values) n += k.length + v.length;
    if (n > MAX_SPECIAL_BYTES) throw new InvalidArgumentError(`tar: global PAX records before offset ${this.#pos} hold more than ${MAX_SPECIAL_BYTES} bytes`);
  }

  #paxSparse0(): [number, number][] | undefined {
    const mapStr = this.#paxString("GNU.sparse.map");
    if (mapStr !== undefined) {
      const n = mapStr.split(",").filter(Boolean).map(Number);
      const map: [number, number][] = [];
      for (let i = 0; i + 1 < n.length; i += 2) map.push([n[i] as number, n[i + 1] as number]);
      return map;
    }
    const offs = this.#pax.get("GNU.sparse.offset");
    const lens = this.#pax.get("GNU.sparse.numbytes");
    if (!offs || !lens) return undefined;
    return offs.map((o, i) => [Number(o.toString()), Number(lens[i]?.toString() ?? 0)]);
  }

  #paxString(key: string): string | undefined {
    const v = this.#pax.get(key) ?? this.#global.get(key);
    return v?.at(-1)?.toString("utf8");
  }

  #record(h: Buffer, type: EntryType, size: number): TarRecord {
    const ustar = h.toString("latin1", 257, 263) === "ustar\0";
    const prefix = ustar ? cstring(h, 345, 155) : "";
    let path = this.#longname ?? (prefix ? `${prefix}/${cstring(h, 0, 100)}` : cstring(h, 0, 100));
    path = this.#paxString("GNU.sparse.name") ?? this.#paxString("path") ?? path;
    const xattrs: Record<string, Buffer> = {};
    for (const map of [this.#global, this.#pax]) {
      for (const [k, v] of map) {
        const last = v.at(-1);
        if (k.startsWith("SCHILY.xattr.") && last) xattrs[k.slice("SCHILY.xattr.".length)] = Buffer.from(last);
      }
    }
    const paxNum = (k: string, dflt: number): number => {
      const s = this.#paxString(k);
      return s === undefined ? dflt : Number(s);
    };
    return {
      path, type,
      mode: num(h, 100, 8), uid: paxNum("uid", num(h, 108, 8)), gid: paxNum("gid", num(h, 116, 8)),
      uname: this.#paxString("uname") ?? cstring(h, 265, 32), gname: this.#paxString("gname") ?? cstring(h, 297, 32),
      size: type === "file" ? paxNum("size", size) : 0,
      mtime: paxNum("mtime", num(h, 136, 12)),
      linkname: this.#paxString("linkpath") ?? this.#longlink ?? cstring(h, 157, 100),
      devmajor: num(h, 329, 8), devminor: num(h, 337, 8), xattrs, segments: [],
    };
  }

  #resetPending(): void {
    this.#pax = new Map();
    this.#longname = undefined;
    this.#longlink = undefined;
  }
}
