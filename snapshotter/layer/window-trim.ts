// A gzip access point's window is the 32 KiB of output before it, there so
// that back-references of the deflate stream after the point can be resolved.
// Only the bytes those references reach matter; the rest can be zeros, and a
// window of mostly zeros costs next to nothing once the index is zstd'd. An
// index published for other nodes (thin-index.ts) is fetched whole before a
// node that never saw the image reads anything, and its windows were most of
// it: trimmed, the python image's three shrank to 15-18% (docs/benchmarks.md).
//
// Which bytes are reached is read off four decodes with made-up windows, not
// a deflate parser of our own: bytes copied from the window are 0x00 with a
// window of zeros and 0xff with one of 0xff (literals are the same in both),
// and with windows holding each position's low and high byte they spell out
// the position they were copied from. A trimmed window is kept only if it
// decodes exactly what the real one does.
import type { Readable } from "node:stream";
import { decodeFrom, type AccessPoint } from "./decoders.js";

/** Output after a point that can reach back into its window (deflate distances go at most 32 KiB back). */
const REACH = 32 << 10;
/** Compressed bytes after a point handed to the trim: far more than REACH of output needs. */
export const TRIM_INPUT_BYTES = 256 << 10;

/**
 * The window of gzip access point `p` with every byte no back-reference
 * reaches zeroed, or undefined when it cannot be trimmed (no window, too
 * little input to be sure, or the trimmed one would decode differently).
 * `input`: the compressed bytes from the point on (from `p.in - 1` when
 * `p.bits` is set); `atEnd`: the blob ends where `input` does.
 */
export function trimmedWindow(input: Buffer, p: AccessPoint, atEnd: boolean): Buffer | undefined {
  const w = p.window;
  if (!w || w.length === 0 || w.length > 1 << 16) return undefined;
  try {
    return trim(input, p, w, atEnd);
  } catch {
    return undefined; // a point this decoder cannot resume from keeps its window whole
  }
}

function trim(input: Buffer, p: AccessPoint, w: Buffer, atEnd: boolean): Buffer | undefined {
  const decode = (window: Buffer): Buffer => decodeFrom("gzip", input, { ...p, window }, 0, REACH);
  const want = decode(w);
  if (want.length < REACH && !atEnd) return undefined; // the input ran out: later output could still reach back
  const n = w.length;
  const zeros = decode(Buffer.alloc(n, 0));
  const ones = decode(Buffer.alloc(n, 0xff));
  const low = decode(Buffer.from(Uint8Array.from({ length: n }, (_, i) => i & 0xff)));
  const high = decode(Buffer.from(Uint8Array.from({ length: n }, (_, i) => i >> 8)));
  const kept = Buffer.alloc(n);
  for (let j = 0; j < zeros.length; j++) {
    if (zeros[j] === ones[j]) continue; // a literal, or copied from output before it
    const at = (low[j] as number) | ((high[j] as number) << 8);
    if (at < n) kept[at] = w[at] as number;
  }
  return decode(kept).equals(want) ? kept : undefined;
}

/**
 * Trims the windows of `points` (ascending `in`), reading `blob` (the whole
 * compressed layer) once from its start; returns the trimmed windows by
 * point, leaving out those that could not be trimmed.
 */
export async function trimWindows(points: readonly AccessPoint[], blob: Readable): Promise<Map<AccessPoint, Buffer>> {
  const out = new Map<AccessPoint, Buffer>();
  const todo = points.filter((p) => p.window && p.window.length > 0);
  let k = 0;
  let base = 0; // blob offset of buf[0]
  let buf: Buffer = Buffer.alloc(0);
  const from = (p: AccessPoint): number => p.in - (p.bits ? 1 : 0);
  const trimReady = (atEnd: boolean): void => {
    for (; k < todo.length; k++) {
      const p = todo[k] as AccessPoint;
      const start = from(p) - base;
      if (start < 0) continue; // cannot happen with ascending points; skipped rather than guessed
      if (!atEnd && buf.length < start + TRIM_INPUT_BYTES) break;
      const input = buf.subarray(start, start + TRIM_INPUT_BYTES);
      const trimmed = trimmedWindow(input, p, atEnd && start + TRIM_INPUT_BYTES >= buf.length);
      if (trimmed) out.set(p, trimmed);
    }
    // keep only what the points still to trim need
    const next = todo[k];
    const keepFrom = next ? Math.max(0, Math.min(buf.length, from(next) - base)) : buf.length;
    buf = buf.subarray(keepFrom);
    base += keepFrom;
  };
  for await (const chunk of blob) {
    buf = buf.length ? Buffer.concat([buf, chunk as Buffer]) : (chunk as Buffer);
    trimReady(false);
  }
  trimReady(true);
  return out;
}
