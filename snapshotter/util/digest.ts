// The one way augur names bytes: `sha256:<hex>`.
import { createHash } from "node:crypto";

/** `sha256:<hex>` of `bytes` (a string is hashed as UTF-8). */
export function sha256Digest(bytes: Buffer | string): string {
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}
