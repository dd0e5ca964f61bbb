// Hand-made archive pieces for hostile-input tests: headers and footers that
// claim what a well-behaved writer never would, built byte by byte because
// tar-stream and the eStargz writer refuse to.

/** One ustar header block for `name`, type `flag`, claiming `size` bytes of data. */
export function ustarHeader(name: string, flag: string, size: number): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, "utf8");
  h.write("0000644\0", 100, "latin1");
  h.write("0000000\0", 108, "latin1");
  h.write("0000000\0", 116, "latin1");
  h.write(`${size.toString(8).padStart(11, "0")}\0`, 124, "latin1");
  h.write("00000000000\0", 136, "latin1");
  h.write(flag, 156, "latin1");
  h.write("ustar\0", 257, "latin1");
  h.write("00", 263, "latin1");
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, "0")}\0 `, 148, "latin1");
  return h;
}

/** The 51-byte eStargz footer naming `tocOffset`. */
export function estargzFooter(tocOffset: number): Buffer {
  return Buffer.concat([
    Buffer.from([0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 26, 0, 0x53, 0x47, 22, 0]),
    Buffer.from(tocOffset.toString(16).padStart(16, "0") + "STARGZ", "latin1"),
    Buffer.from([1, 0, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]),
  ]);
}
