// Typed loader for the zran addon (zran.c, built by `npm run build:native`).
// The .node file stays next to its sources; compiled JS under dist/ finds it
// through the repository path.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { UnavailableError } from "../../errdefs/errors.js";

/** A gzip access point: resume raw inflate at byte `in` (minus one if `bits`) with `window`. */
export interface ZranPoint {
  in: number;
  bits: number;
  out: number;
  /** Absent when the inflater was made with `noWindow`. */
  window?: Buffer;
}

declare const inflaterBrand: unique symbol;
export type InflaterHandle = { readonly [inflaterBrand]: true };

export interface ZranBinding {
  /**
   * Points at least `span` apart; or, with `at` (ascending uncompressed offsets),
   * at the first block boundary and each boundary listed. `noWindow`: points
   * without their 32 KiB window, to learn where boundaries are.
   */
  createInflater(span: number, at?: Float64Array, noWindow?: boolean): InflaterHandle;
  inflaterWrite(h: InflaterHandle, input: Buffer): { outputs: Buffer[]; points: ZranPoint[] };
  inflaterState(h: InflaterHandle): { ended: boolean; totalIn: number; totalOut: number };
  extract(input: Buffer, bits: number, window: Buffer, skip: number, length: number): Buffer;
}

const candidates = [
  "./build/Release/zran.node",
  "../../../../snapshotter/layer/zran/build/Release/zran.node",
];

let binding: ZranBinding | undefined;

export function zran(): ZranBinding {
  if (binding) return binding;
  const require = createRequire(import.meta.url);
  for (const rel of candidates) {
    const path = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(path)) {
      binding = require(path) as ZranBinding;
      return binding;
    }
  }
  throw new UnavailableError("zran addon not built: run `npm run build:native`");
}
