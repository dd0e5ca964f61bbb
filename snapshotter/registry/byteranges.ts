// multipart/byteranges (RFC 9110 §14.6, RFC 2046 §5.1): the body of a 206 a
// server sends for a Range header that names several ranges. A strict,
// streaming parser: each part is handed back as soon as its data and the
// delimiter after it have arrived, so a reader waiting on the first range
// need not wait for the rest of the response. Part lengths come from each
// part's Content-Range, so part data is never scanned for the boundary;
// whatever does not match byte for byte is refused. No npm library fits:
// dicer is unmaintained (with a DoS CVE), busboy and multipasta parse forms.
import { FailedPreconditionError, InvalidArgumentError } from "../errdefs/errors.js";
import { validateRange, type ByteRange } from "./blob-range.js";

/** One part of the body: bytes [start, end) of the blob. */
export interface BytePart {
  start: number;
  /** Exclusive. */
  end: number;
  /** The blob's size, when the part's Content-Range gave it (`/*` does not). */
  size?: number;
  /**
   * end - start bytes. A subarray of the chunk pushed when the part lies in
   * one chunk, else a fresh copy: callers must not reuse pushed chunks.
   */
  data: Buffer;
}

export interface ByteRangesLimits {
  /** Longest preamble, padding after a boundary, and header section of one part. Default 8 KiB. */
  maxHeaderBytes?: number;
  /** Most parts in one body. Default 256. */
  maxParts?: number;
  /** Largest part a Content-Range may announce (its data is held in memory). Default 64 MiB. */
  maxPartBytes?: number;
}

/** `bytes=a-b,c-d,…` for `ranges` in the order given; each must be valid and non-empty. */
export function multiRangeHeader(ranges: readonly ByteRange[]): string {
  if (ranges.length === 0) throw new InvalidArgumentError("a Range header needs at least one range");
  return `bytes=${ranges
    .map((r) => {
      validateRange(r);
      if (r.length === 0) throw new InvalidArgumentError(`empty blob range at offset ${r.offset}`);
      return `${r.offset}-${r.offset + r.length - 1}`;
    })
    .join(",")}`;
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const PARAMETER = /\s*;\s*([!#$%&'*+.^_`|~0-9A-Za-z-]+)=("(?:[^"\\\r\n]|\\[^\r\n])*"|[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*/y;
/** RFC 2046 bchars: at most 70, not ending in a space. */
const BOUNDARY = /^[0-9A-Za-z'()+_,\-./:=? ]{0,69}[0-9A-Za-z'()+_,\-./:=?]$/;

/** The boundary of a `multipart/byteranges` Content-Type (quoted or not); undefined for any other type or a bad boundary. */
export function boundaryOf(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const slash = /^\s*multipart\/byteranges(?=\s*;|\s*$)/i.exec(contentType);
  if (!slash) return undefined;
  let boundary: string | undefined;
  PARAMETER.lastIndex = slash[0].length;
  while (PARAMETER.lastIndex < contentType.length) {
    const at = PARAMETER.lastIndex;
    const m = PARAMETER.exec(contentType);
    if (!m || m.index !== at) return undefined;
    if (m[1]?.toLowerCase() !== "boundary") continue;
    if (boundary !== undefined) return undefined; // two boundaries: which one?
    const raw = m[2] ?? "";
    boundary = raw.startsWith('"') ? raw.slice(1, -1).replace(/\\(.)/g, "$1") : raw;
  }
  return boundary !== undefined && BOUNDARY.test(boundary) ? boundary : undefined;
}

const CR = 0x0d;
const LF = 0x0a;
const DASH = 0x2d;
const SPACE = 0x20;
const TAB = 0x09;

type State =
  | "preamble" // lines up to the first delimiter
  | "headers" // a part's header lines, up to the empty one
  | "data" // a part's bytes, as many as its Content-Range says
  | "delimiter" // CRLF "--boundary" right after the data
  | "delimiterTail" // "--" (that was the last part), or padding and CRLF (another part follows)
  | "closing" // the second "-" of "--"
  | "lineEnd" // the LF after the padding's CR
  | "epilogue"; // after the close delimiter: ignored

const malformed = (message: string): FailedPreconditionError => new FailedPreconditionError(`multipart/byteranges body: ${message}`);

/** Parses one multipart/byteranges body pushed chunk by chunk; see the file comment. */
export class ByteRangesParser {
  readonly #dashBoundary: string;
  readonly #delimiter: Buffer;
  readonly #maxHeaderBytes: number;
  readonly #maxParts: number;
  readonly #maxPartBytes: number;
  #state: State = "preamble";
  /** Set once the body was refused: every later call throws it again. */
  #error: FailedPreconditionError | undefined;
  /** Bytes of the current text section (the preamble, a delimiter and its padding, or a part's headers), against maxHeaderBytes. */
  #textBytes = 0;
  /** The line read so far, as pieces of pushed chunks. */
  #line: Buffer[] = [];
  /** How much of #delimiter has matched. */
  #matched = 0;
  #parts = 0;
  /** The blob size the first part that gave one said; later parts must agree. */
  #size: number | undefined;
  #contentRange: string | undefined;
  /** The part being read: its range, from its headers, and its data so far. */
  #part: { start: number; end: number; size: number | undefined } | undefined;
  #data: Buffer[] = [];
  #have = 0;

  constructor(boundary: string, limits: ByteRangesLimits = {}) {
    if (!BOUNDARY.test(boundary)) throw new InvalidArgumentError(`invalid multipart boundary ${JSON.stringify(boundary)}`);
    this.#dashBoundary = `--${boundary}`;
    this.#delimiter = Buffer.from(`\r\n--${boundary}`, "latin1");
    this.#maxHeaderBytes = limits.maxHeaderBytes ?? 8 << 10;
    this.#maxParts = limits.maxParts ?? 256;
    this.#maxPartBytes = limits.maxPartBytes ?? 64 << 20;
  }

  /**
   * Parts completed by `chunk`, in body order. A malformed body throws
   * FailedPreconditionError, here and on every call after; when `chunk`
   * completed parts before the fault, they are returned first (good parts
   * are not lost to a fault after them) and `error` tells of the fault.
   */
  push(chunk: Buffer): BytePart[] {
    if (this.#error) throw this.#error;
    const parts: BytePart[] = [];
    try {
      for (let at = 0; at < chunk.length && this.#state !== "epilogue"; ) {
        if (this.#state === "data") at = this.#takeData(chunk, at);
        else if (this.#state === "preamble" || this.#state === "headers") at = this.#takeLine(chunk, at);
        else if (this.#state === "delimiter") at = this.#takeDelimiter(chunk, at);
        else at = this.#takeTail(chunk, at, parts);
      }
    } catch (err) {
      this.#error = err instanceof FailedPreconditionError ? err : malformed(String(err));
      if (parts.length === 0) throw this.#error;
    }
    return parts;
  }

  /** The fault that made the body malformed, once one was found (push and end throw it). */
  get error(): FailedPreconditionError | undefined {
    return this.#error;
  }

  /** The body has ended: throws FailedPreconditionError unless it ended after the close delimiter. */
  end(): void {
    if (this.#error) throw this.#error;
    if (this.#state === "epilogue") return;
    const n = this.#parts;
    const where =
      this.#state === "preamble" ? "before the first boundary"
      : this.#state === "headers" ? `in the headers of part ${n}`
      : this.#state === "data" ? `in the data of part ${n} (${this.#have} of ${this.#part ? this.#part.end - this.#part.start : 0} bytes)`
      : this.#state === "delimiter" ? `before the boundary after part ${n}`
      : `without the close delimiter after part ${n}`;
    this.#error = malformed(`ended ${where}`);
    throw this.#error;
  }

  /** Up to and including the next LF (or the chunk's end), bounded by maxHeaderBytes per section. */
  #takeLine(chunk: Buffer, at: number): number {
    const lf = chunk.indexOf(LF, at);
    const stop = lf === -1 ? chunk.length : lf + 1;
    this.#textBytes += stop - at;
    if (this.#textBytes > this.#maxHeaderBytes) {
      throw malformed(this.#state === "preamble" ? `preamble longer than ${this.#maxHeaderBytes} bytes` : `headers of part ${this.#parts} longer than ${this.#maxHeaderBytes} bytes`);
    }
    this.#line.push(chunk.subarray(at, stop));
    if (lf === -1) return stop;
    const line = this.#line.length === 1 ? (this.#line[0] as Buffer) : Buffer.concat(this.#line);
    this.#line = [];
    if (this.#state === "preamble") this.#preambleLine(line);
    else this.#headerLine(line);
    return stop;
  }

  /** Preamble lines are skipped until one is the first delimiter, `--boundary` with optional padding. */
  #preambleLine(line: Buffer): void {
    const text = line.toString("latin1").replace(/\r?\n$/, "");
    if (!text.startsWith(this.#dashBoundary)) return;
    const rest = text.slice(this.#dashBoundary.length);
    if (rest.startsWith("--")) throw malformed("close delimiter before any part");
    if (!/^[ \t]*$/.test(rest)) return; // a line that only starts like the boundary
    if (!line.toString("latin1").endsWith("\r\n")) throw malformed("first boundary line not ended by CRLF");
    this.#startPart();
  }

  #startPart(): void {
    if (this.#parts === this.#maxParts) throw malformed(`more than ${this.#maxParts} parts`);
    this.#parts++;
    this.#state = "headers";
    this.#textBytes = 0;
    this.#contentRange = undefined;
  }

  #headerLine(line: Buffer): void {
    const n = this.#parts;
    if (line.length < 2 || line[line.length - 2] !== CR) throw malformed(`a header line of part ${n} not ended by CRLF`);
    const text = line.subarray(0, line.length - 2).toString("latin1");
    if (text === "") {
      this.#startData();
      return;
    }
    if (text.startsWith(" ") || text.startsWith("\t")) throw malformed(`folded header line in part ${n}`);
    const colon = text.indexOf(":");
    const name = text.slice(0, Math.max(colon, 0));
    if (!TOKEN.test(name)) throw malformed(`part ${n} has a header line that is not "name: value": ${JSON.stringify(text.slice(0, 80))}`);
    const value = text.slice(colon + 1);
    if (/[\0-\x08\n-\x1f\x7f]/.test(value)) throw malformed(`control character in header ${name} of part ${n}`);
    if (name.toLowerCase() !== "content-range") return;
    if (this.#contentRange !== undefined) throw malformed(`part ${n} has two Content-Range headers`);
    this.#contentRange = value.trim();
  }

  #startData(): void {
    const n = this.#parts;
    if (this.#contentRange === undefined) throw malformed(`part ${n} has no Content-Range`);
    const part = parseContentRange(this.#contentRange);
    if (!part) throw malformed(`part ${n} has an invalid Content-Range ${JSON.stringify(this.#contentRange)}`);
    if (part.end - part.start > this.#maxPartBytes) throw malformed(`part ${n} (Content-Range ${this.#contentRange}) is larger than ${this.#maxPartBytes} bytes`);
    if (part.size !== undefined) {
      if (this.#size !== undefined && this.#size !== part.size) throw malformed(`part ${n} gives blob size ${part.size}, an earlier part ${this.#size}`);
      this.#size = part.size;
    }
    this.#part = part;
    this.#data = [];
    this.#have = 0;
    this.#state = "data";
  }

  #takeData(chunk: Buffer, at: number): number {
    const part = this.#part as { start: number; end: number };
    const n = Math.min(part.end - part.start - this.#have, chunk.length - at);
    this.#data.push(chunk.subarray(at, at + n));
    this.#have += n;
    if (this.#have === part.end - part.start) {
      this.#state = "delimiter";
      this.#matched = 0;
      this.#textBytes = 0;
    }
    return at + n;
  }

  /** CRLF and `--boundary`, byte for byte: anything else means the data was not the length its Content-Range said. */
  #takeDelimiter(chunk: Buffer, at: number): number {
    const n = Math.min(this.#delimiter.length - this.#matched, chunk.length - at);
    if (!chunk.subarray(at, at + n).equals(this.#delimiter.subarray(this.#matched, this.#matched + n))) {
      throw malformed(`part ${this.#parts} (Content-Range ${this.#contentRange ?? ""}) is not followed by CRLF and the boundary: its data is not the length its Content-Range says`);
    }
    this.#matched += n;
    this.#textBytes += n;
    if (this.#matched === this.#delimiter.length) this.#state = "delimiterTail";
    return at + n;
  }

  /** After `--boundary`: `--` ends the body; padding (spaces, tabs) and CRLF start another part. Either completes the part before it. */
  #takeTail(chunk: Buffer, at: number, parts: BytePart[]): number {
    const byte = chunk[at];
    const bad = (): FailedPreconditionError => malformed(`unexpected byte 0x${(byte ?? 0).toString(16)} after the boundary following part ${this.#parts}`);
    if (++this.#textBytes > this.#maxHeaderBytes) throw malformed(`padding after the boundary following part ${this.#parts} longer than ${this.#maxHeaderBytes} bytes`);
    if (this.#state === "delimiterTail") {
      if (byte === DASH) this.#state = "closing";
      else if (byte === CR) this.#state = "lineEnd";
      else if (byte !== SPACE && byte !== TAB) throw bad();
    } else if (this.#state === "closing") {
      if (byte !== DASH) throw bad();
      parts.push(this.#completePart());
      this.#state = "epilogue";
    } else {
      if (byte !== LF) throw bad();
      parts.push(this.#completePart());
      this.#startPart();
    }
    return at + 1;
  }

  #completePart(): BytePart {
    const { start, end, size } = this.#part as { start: number; end: number; size: number | undefined };
    const data = this.#data.length === 1 ? (this.#data[0] as Buffer) : Buffer.concat(this.#data, this.#have);
    this.#data = [];
    this.#part = undefined;
    return size === undefined ? { start, end, data } : { start, end, size, data };
  }
}

/**
 * `bytes first-last/size` or `bytes first-last/*` as [start, end) and the
 * size; undefined when malformed, inverted, or past the size it gives.
 */
export function parseContentRange(value: string | undefined): { start: number; end: number; size: number | undefined } | undefined {
  const m = /^bytes +(\d{1,16})-(\d{1,16})\/(\d{1,16}|\*)$/i.exec(value?.trim() ?? "");
  if (!m) return undefined;
  const first = Number(m[1]);
  const last = Number(m[2]);
  const size = m[3] === "*" ? undefined : Number(m[3]);
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(last) || last < first) return undefined;
  if (size !== undefined && (!Number.isSafeInteger(size) || last >= size)) return undefined;
  return { start: first, end: last + 1, size };
}
