// A blob stream that survives connection drops: when the body fails with a
// transient error, it asks for the rest with a Range request from the byte it
// stopped at, a bounded number of times, and the reader never notices.
import { PassThrough, type Readable } from "node:stream";
import { errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { isTransientError } from "./http-transport.js";

const log = logger("registry");

/**
 * Joins `first` (the blob's bytes from `start`) and, after a transient failure,
 * the streams `open(offset)` returns for the remainder; at most `resumes` times.
 */
export function resumingStream(first: Readable, start: number, open: (offset: number) => Promise<Readable>, resumes: number, what: string): Readable {
  const out = new PassThrough();
  let received = 0;
  let left = resumes;
  let current = first;
  const pump = (src: Readable): void => {
    current = src;
    src.on("data", (chunk: Buffer) => {
      received += chunk.length;
      if (!out.write(chunk)) src.pause();
    });
    src.once("end", () => out.end());
    src.once("error", (err) => {
      if (out.destroyed) return;
      if (!isTransientError(err) || left-- <= 0) {
        out.destroy(err);
        return;
      }
      log.info("blob stream broke, resuming", { what, offset: start + received, error: errorMessage(err) });
      open(start + received).then(
        (next) => (out.destroyed ? next.destroy() : pump(next)),
        (e: unknown) => out.destroy(e instanceof Error ? e : new Error(String(e))),
      );
    });
  };
  out.on("drain", () => current.resume());
  out.once("close", () => current.destroy());
  pump(first);
  return out;
}
