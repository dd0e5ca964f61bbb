import { describe, expect, it } from "vitest";
import { MAX_INFLATION, nativeCopyRefusal } from "../../../snapshotter/overlay/native-copy.js";

const MiB = 1 << 20;

describe("which layers get a native copy", () => {
  it("an ordinary layer within the bound is copied", () => {
    expect(nativeCopyRefusal({ unpacked: 300 * MiB, compressed: 100 * MiB }, { used: 0, limit: 1024 * MiB })).toBeUndefined();
    // small layers whatever their ratio: a few text files compress well
    expect(nativeCopyRefusal({ unpacked: 60 * MiB, compressed: 100_000 }, { used: 0, limit: 1024 * MiB })).toBeUndefined();
  });

  it("a layer unpacking to far more than its blob is never copied (a 21 MB gzip of zeros is 21 GB)", () => {
    expect(nativeCopyRefusal({ unpacked: 21_000 * MiB, compressed: 21 * MiB }, { used: 0, limit: Infinity })).toBe(
      `it unpacks to ${21_000 * MiB} bytes from ${21 * MiB}, more than ${MAX_INFLATION} times its blob`,
    );
  });

  it("copies together keep within their bound", () => {
    expect(nativeCopyRefusal({ unpacked: 300 * MiB, compressed: 100 * MiB }, { used: 800 * MiB, limit: 1024 * MiB })).toBe(
      `native copies would take ${1100 * MiB} bytes, over their ${1024 * MiB}-byte bound (--native-copy-size)`,
    );
  });
});
