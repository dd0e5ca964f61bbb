// A hostile layer's special headers (PAX records, GNU long names, sparse
// maps) are buffered whole by the scanner, so their size is capped before a
// byte of them is held: a header claiming gigabytes fails at once.
import { describe, expect, it } from "vitest";
import { MAX_SPECIAL_BYTES, TarScanner } from "../../../snapshotter/layer/tar-scanner.js";
import { ustarHeader } from "../../harness/hostile-blobs.js";


const padded = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);

/** A PAX record set holding `key=value`. */
function pax(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let len = body.length;
  while (`${len}${body}`.length !== len) len = `${len}${body}`.length;
  return Buffer.from(`${len}${body}`);
}

describe("tar special headers are capped", () => {
  for (const [flag, what] of [["x", "pax"], ["g", "global"], ["L", "longname"], ["K", "longlink"]] as const) {
    it(`a ${what} header claiming 1.5 GB fails at its header block, holding nothing`, () => {
      const scanner = new TarScanner();
      expect(() => scanner.push(ustarHeader("././@x", flag, 1_500_000_000))).toThrow(`tar: ${what} header at offset 0 claims 1500000000 bytes, more than the ${MAX_SPECIAL_BYTES} allowed`);
    });
  }

  it("one just under the cap is read as before", () => {
    const path = `d/${"n".repeat(MAX_SPECIAL_BYTES - 100)}`;
    const rec = pax("path", path);
    expect(rec.length).toBeLessThanOrEqual(MAX_SPECIAL_BYTES);
    const scanner = new TarScanner();
    const out = scanner.push(Buffer.concat([ustarHeader("pax", "x", rec.length), padded(rec), ustarHeader("short", "0", 3), padded(Buffer.from("abc"))]));
    expect(out.map((r) => r.path)).toEqual([path]);
    expect(out[0]?.size).toBe(3);
  });

  it("global records that add up to more than the cap fail; one replacing another does not add up", () => {
    const big = pax("comment", "c".repeat(600_000));
    const scanner = new TarScanner();
    // the same key again replaces it
    scanner.push(Buffer.concat([ustarHeader("g1", "g", big.length), padded(big), ustarHeader("g2", "g", big.length), padded(big)]));
    const other = pax("other", "o".repeat(600_000));
    expect(() => scanner.push(Buffer.concat([ustarHeader("g3", "g", other.length), padded(other)]))).toThrow(/global PAX records before offset \d+ hold more than 1048576 bytes/);
  });
});
