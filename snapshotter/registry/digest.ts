// Content digests: computing them and refusing bytes that do not match.
import { createHash, type Hash } from "node:crypto";
import { Transform, type TransformCallback } from "node:stream";
import { FailedPreconditionError } from "../errdefs/errors.js";
import { validateDigest } from "./reference.js";

function hasher(digest: string): { hash: Hash; algorithm: string; hex: string } {
  validateDigest(digest);
  const [algorithm = "", hex = ""] = digest.split(":", 2);
  return { hash: createHash(algorithm), algorithm, hex };
}

export { sha256Digest } from "../util/digest.js";

function mismatch(what: string, expected: string, actual: string): FailedPreconditionError {
  return new FailedPreconditionError(`${what}: digest mismatch: expected ${expected}, got ${actual}`);
}

/** Throws FailedPreconditionError unless `bytes` hash to `digest`; `what` names the host and object. */
export function verifyDigest(bytes: Buffer, digest: string, what: string): void {
  const { hash, algorithm, hex } = hasher(digest);
  const actual = hash.update(bytes).digest("hex");
  if (actual !== hex) throw mismatch(what, digest, `${algorithm}:${actual}`);
}

/** A pass-through stream that fails at its end unless everything that went through hashes to `digest`. */
export class DigestVerifier extends Transform {
  readonly #hash: Hash;
  readonly #algorithm: string;
  readonly #expected: string;
  readonly #digest: string;
  readonly #what: string;

  constructor(digest: string, what: string) {
    super();
    const { hash, algorithm, hex } = hasher(digest);
    this.#hash = hash;
    this.#algorithm = algorithm;
    this.#expected = hex;
    this.#digest = digest;
    this.#what = what;
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.#hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    const actual = this.#hash.digest("hex");
    callback(actual === this.#expected ? null : mismatch(this.#what, this.#digest, `${this.#algorithm}:${actual}`));
  }
}
