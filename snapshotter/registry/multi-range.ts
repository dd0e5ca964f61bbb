// Several byte ranges of a blob in one request (`Range: bytes=a-b,c-d`): one
// round trip instead of one per range. registry-client.ts sends the request;
// this file checks the ranges, reads the answer, and remembers which servers
// do not do multi-range. A server may answer 206 multipart/byteranges (parts
// possibly coalesced or reordered), 206 with one part (S3 and many CDNs: the
// first range only), or 200 with the whole blob (Range ignored). Each range
// resolves as soon as a part holding it has arrived; ranges the answer did
// not bring are left to the caller to fetch one by one (as stargz's
// singleRangeMode does, fs/remote/resolver.go).
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { validateRange, type ByteRange } from "./blob-range.js";
import { ByteRangesParser, boundaryOf, parseContentRange, type BytePart } from "./byteranges.js";
import type { HttpResponse } from "./http-transport.js";

const log = logger("registry");

/** Ranges per request: more go in further requests, so the Range header stays far below servers' header limits (~2.5 KB). */
export const MAX_RANGES_PER_REQUEST = 64;

/** How much more than the asked bytes one part may bring (a server coalescing ranges sends the gaps too). */
const PART_SLACK_BYTES = 1 << 20;

const askedBytes = (ranges: readonly WantedRange[]): number => ranges.reduce((n, w) => n + w.range.length, 0);

/** Statuses a multi-range request's answer is read for; any other is an error of the request. */
export const MULTI_RANGE_STATUSES: readonly number[] = [200, 206, 400, 416];

/** Throws InvalidArgumentError unless every range is valid and non-empty and no two overlap. */
export function validateRanges(ranges: readonly ByteRange[]): void {
  for (const r of ranges) {
    validateRange(r);
    if (!(r.length > 0)) throw new InvalidArgumentError(`empty blob range at offset ${r.offset}`);
  }
  const sorted = [...ranges].sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const [a, b] = [sorted[i - 1] as ByteRange, sorted[i] as ByteRange];
    // overlapping ranges would also let a server (Go's ServeContent) decide the request is an attack and send the whole blob
    if (b.offset < a.offset + a.length) throw new InvalidArgumentError(`blob ranges [${a.offset}, ${a.offset + a.length}) and [${b.offset}, ${b.offset + b.length}) overlap`);
  }
}

/** One requested range and the promise its caller holds; settles once, from a part or from a fetch of its own. */
export class WantedRange {
  readonly promise: Promise<Buffer>;
  readonly end: number;
  #settled = false;
  #resolve: (bytes: Buffer) => void = () => undefined;
  #reject: (err: unknown) => void = () => undefined;

  constructor(readonly range: ByteRange) {
    this.end = range.offset + range.length;
    this.promise = new Promise<Buffer>((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
    // a caller may await only some of its ranges: another's failure is not an unhandled rejection
    this.promise.catch(() => undefined);
  }

  get settled(): boolean {
    return this.#settled;
  }

  resolve(bytes: Buffer): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#resolve(bytes);
  }

  reject(err: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#reject(err);
  }

  follow(fetched: Promise<Buffer>): void {
    fetched.then((b) => this.resolve(b), (err: unknown) => this.reject(err));
  }

  /**
   * Resolves with this range's bytes if `part` holds them: all of them, or,
   * for a range running past the blob's end, those up to the end (as a
   * single-range fetch returns). The bytes are copied, so a small range
   * never keeps a large part or network chunk alive.
   */
  takeFrom(part: BytePart): void {
    const { offset } = this.range;
    if (this.#settled || offset < part.start || offset >= part.end) return;
    const atBlobEnd = part.size !== undefined && part.end === part.size;
    if (this.end > part.end && !atBlobEnd) return;
    const to = Math.min(this.end, part.end);
    this.resolve(Buffer.from(part.data.subarray(offset - part.start, to - part.start)));
  }
}

/**
 * What a multi-range answer says about the server: `served` every range it
 * could; `single-range`: it does not do multi-range (200, 400, or one part
 * short of ranges it could have sent); `unsatisfiable` (416); `malformed`
 * multipart body; `broken`: the body stopped midway (connection, timeout).
 */
export type RangesAnswer = "served" | "single-range" | "unsatisfiable" | "malformed" | "broken";

export interface RangesOutcome {
  answer: RangesAnswer;
  /** The URL that answered (a storage location the registry redirected to, perhaps). */
  from: string;
  detail?: string;
}

/**
 * Reads a multi-range answer (status in MULTI_RANGE_STATUSES), resolving
 * `open` ranges as their parts arrive. Never throws: a failure midway is an
 * outcome, so the transport does not resend ranges already resolved. The
 * body is read to its end or destroyed.
 */
export async function receiveRanges(res: HttpResponse, open: readonly WantedRange[]): Promise<RangesOutcome> {
  const outcome = (answer: RangesAnswer, detail?: string): RangesOutcome => ({ answer, from: res.url, ...(detail ? { detail } : {}) });
  if (res.status === 200) {
    res.body.destroy(); // the whole blob is coming: never read it by accident
    return outcome("single-range", "HTTP 200, the whole blob");
  }
  if (res.status !== 206) {
    // gcr.io's storage answered multi-range requests with 400 (stargz #81)
    await res.body.dump().catch(() => undefined);
    return outcome(res.status === 416 ? "unsatisfiable" : "single-range", `HTTP ${res.status}`);
  }
  const boundary = boundaryOf(res.header("content-type"));
  return boundary ? receiveParts(res, boundary, open, outcome) : receiveSinglePart(res, open, outcome);
}

type Outcome = (answer: RangesAnswer, detail?: string) => RangesOutcome;

async function receiveParts(res: HttpResponse, boundary: string, open: readonly WantedRange[], outcome: Outcome): Promise<RangesOutcome> {
  // a part covers at most the span from the first range to the last (servers coalesce, never widen),
  // and never much more than was asked: a server cannot make augur hold a blob's worth for a few ranges
  const span = Math.max(...open.map((w) => w.end)) - Math.min(...open.map((w) => w.range.offset));
  const parser = new ByteRangesParser(boundary, { maxParts: open.length, maxPartBytes: Math.min(span, askedBytes(open) + PART_SLACK_BYTES) });
  let refused: Error | undefined;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      let parts: BytePart[];
      try {
        parts = parser.push(chunk);
      } catch (err) {
        refused = err as Error;
        break; // destroys the body
      }
      for (const part of parts) for (const w of open) w.takeFrom(part);
      refused = parser.error; // a fault after the parts this chunk completed
      if (refused) break;
    }
  } catch (err) {
    return outcome("broken", errorMessage(err));
  }
  if (refused) return outcome("malformed", refused.message);
  try {
    parser.end();
  } catch (err) {
    return outcome("broken", errorMessage(err)); // cut short, not malformed: no reason to stop asking this server
  }
  return outcome("served");
}

/** A 206 of one range: the ranges inside it resolve as its bytes arrive; those outside it, if the blob has them, say the server ignored them. */
async function receiveSinglePart(res: HttpResponse, open: readonly WantedRange[], outcome: Outcome): Promise<RangesOutcome> {
  const contentRange = res.header("content-range");
  const part = parseContentRange(contentRange);
  if (!part) {
    res.body.destroy();
    return outcome("malformed", `a 206 with neither a multipart/byteranges boundary nor a valid Content-Range (Content-Type ${res.header("content-type") ?? "none"}, Content-Range ${contentRange ?? "none"})`);
  }
  const inside = (w: WantedRange): boolean => w.range.offset >= part.start && w.range.offset < part.end && (w.end <= part.end || part.end === part.size);
  const covered = open.filter(inside);
  // ranges past the blob's end it could not have sent (Go's ServeContent sends one part when only one range is satisfiable)
  const missed = open.some((w) => !inside(w) && (part.size === undefined || w.range.offset < part.size));
  const answer = (ok: boolean): RangesOutcome =>
    missed ? outcome("single-range", `one part, ${contentRange ?? ""}`) : ok ? outcome("served") : outcome("broken", `body ended before ${contentRange ?? ""} arrived`);
  if (covered.length === 0) {
    res.body.destroy();
    return answer(true);
  }
  const need = Math.min(part.end, Math.max(...covered.map((w) => w.end))) - part.start;
  if (need > askedBytes(covered) + PART_SLACK_BYTES) {
    // one part reaching far beyond what it holds of the ask: not worth reading, ask range by range
    res.body.destroy();
    return outcome("single-range", `one part of ${need} bytes for ${askedBytes(covered)} asked, ${contentRange ?? ""}`);
  }
  const bytes = Buffer.allocUnsafe(need);
  let have = 0;
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      const n = Math.min(chunk.length, need - have);
      chunk.copy(bytes, have, 0, n);
      have += n;
      const sofar = { start: part.start, end: part.start + have, ...(part.size !== undefined ? { size: part.size } : {}), data: bytes.subarray(0, have) };
      for (const w of covered) w.takeFrom(sofar);
      // the part goes on past what was asked (or past its Content-Range): not worth reading
      if (have === need && (need < part.end - part.start || n < chunk.length)) break;
    }
  } catch (err) {
    return missed ? answer(false) : outcome("broken", errorMessage(err));
  }
  return answer(have === need);
}

/** Which servers do not do multi-range requests (remembered by origin), and what multi-range requests were sent. */
export class MultiRangeSupport {
  readonly #singleRange = new Set<string>();
  /** Multi-range requests sent and the ranges they carried; ranges of multi-range calls fetched one by one instead. */
  readonly counts = { multiRequests: 0, multiRanges: 0, singleFallbacks: 0 };

  /** True once the server at `url` answered a multi-range request with one part, the whole blob, or a malformed body. */
  singleRangeOnly(url: string): boolean {
    return this.#singleRange.has(originOf(url));
  }

  /** Remembers what `outcome` says of the endpoint asked and of the server that answered (its storage, after a redirect). */
  learn(outcome: RangesOutcome, endpointUrl: string, what: string): void {
    const { answer, detail } = outcome;
    if (answer === "broken") log.debug("multi-range response cut short; fetching the rest one by one", { what, error: detail });
    if (answer !== "single-range" && answer !== "malformed") return;
    const fresh = [endpointUrl, outcome.from].map(originOf).filter((o) => !this.#singleRange.has(o));
    for (const o of fresh) this.#singleRange.add(o);
    while (this.#singleRange.size > 4096) this.#singleRange.delete(this.#singleRange.values().next().value as string);
    if (answer === "malformed") log.warn("malformed multi-range response; fetching ranges one by one from this server on", { what, error: detail });
    else if (fresh.length > 0) log.info("server does not do multi-range requests; fetching ranges one by one from it on", { what, answer: detail });
  }
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
}
