// Byte ranges of blobs: the `Range` header, checking what the server answered
// (206 with `Content-Range`, or 200 when it ignored the range), and skipping
// the bytes before the offset in the 200 case.
import { Transform, type TransformCallback } from "node:stream";
import { FailedPreconditionError, InvalidArgumentError } from "../errdefs/errors.js";

/** `length` bytes of a blob starting at `offset`. */
export interface ByteRange {
  offset: number;
  length: number;
}

export function validateRange(range: { offset: number; length?: number }): void {
  if (!Number.isSafeInteger(range.offset) || range.offset < 0) throw new InvalidArgumentError(`invalid blob offset ${range.offset}`);
  if (range.length !== undefined && (!Number.isSafeInteger(range.length) || range.length < 0)) {
    throw new InvalidArgumentError(`invalid blob range length ${range.length}`);
  }
}

/** `bytes=offset-last`, or `bytes=offset-` when the range runs to the end of the blob. */
export function rangeHeader(offset: number, length?: number): string {
  return length === undefined ? `bytes=${offset}-` : `bytes=${offset}-${offset + length - 1}`;
}

/**
 * How many leading bytes of the response body to drop to reach `offset`:
 * 0 for a 206 whose `Content-Range` starts there, `offset` for a 200 (range ignored).
 */
export function bytesToSkip(status: number, contentRange: string | undefined, offset: number, what: string): number {
  if (status === 200) return offset;
  const start = /^bytes (\d+)-\d+\/(?:\d+|\*)$/.exec(contentRange ?? "")?.[1];
  if (start === undefined) throw new FailedPreconditionError(`${what}: partial response without a valid Content-Range (${contentRange ?? "none"})`);
  if (Number(start) !== offset) throw new FailedPreconditionError(`${what}: asked for offset ${offset}, server sent range ${contentRange}`);
  return 0;
}

/** Drops the first `count` bytes that pass through. */
export class SkipBytes extends Transform {
  #left: number;

  constructor(count: number) {
    super();
    this.#left = count;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    if (this.#left >= chunk.length) {
      this.#left -= chunk.length;
      callback();
      return;
    }
    const rest = chunk.subarray(this.#left);
    this.#left = 0;
    callback(null, rest);
  }
}
