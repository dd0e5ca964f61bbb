// The multipart/byteranges parser: the parts of a body come out byte-exact
// however the body is split into chunks, each as soon as it is complete;
// anything that breaks the format is refused with a message saying what.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { isFailedPrecondition, isInvalidArgument } from "../../../snapshotter/errdefs/errors.js";
import { ByteRangesParser, boundaryOf, multiRangeHeader, type BytePart, type ByteRangesLimits } from "../../../snapshotter/registry/byteranges.js";

const B = "3d6b6a416f9b5";

interface PartSpec {
  start: number;
  data: Buffer;
  /** Content-Range value; default `bytes start-last/1000`. */
  range?: string;
  headers?: string[];
}

/** A body as Go's http.ServeContent writes it, with the pieces a test wants to change. */
function body(parts: PartSpec[], opts: { preamble?: string; close?: string; boundary?: string } = {}): Buffer {
  const b = opts.boundary ?? B;
  const pieces: Buffer[] = [Buffer.from(opts.preamble ?? "")];
  parts.forEach((p, i) => {
    const range = p.range ?? `bytes ${p.start}-${p.start + p.data.length - 1}/1000`;
    const headers = p.headers ?? ["Content-Type: application/octet-stream", `Content-Range: ${range}`];
    pieces.push(Buffer.from(`${i === 0 ? "" : "\r\n"}--${b}\r\n${headers.join("\r\n")}\r\n\r\n`), p.data);
  });
  pieces.push(Buffer.from(opts.close ?? `\r\n--${b}--\r\n`));
  return Buffer.concat(pieces);
}

/** Parses `chunks` and ends the body; returns the parts with the index of the chunk that completed each. */
function parse(chunks: Buffer[], limits?: ByteRangesLimits, boundary = B): { part: BytePart; chunk: number }[] {
  const parser = new ByteRangesParser(boundary, limits);
  const out: { part: BytePart; chunk: number }[] = [];
  chunks.forEach((c, i) => parser.push(c).forEach((part) => out.push({ part, chunk: i })));
  parser.end();
  return out;
}

const simple = (parts: BytePart[]): { start: number; end: number; size?: number; data: string }[] =>
  parts.map((p) => ({ start: p.start, end: p.end, ...(p.size !== undefined ? { size: p.size } : {}), data: p.data.toString("latin1") }));

function refusal(fn: () => unknown): Error {
  try {
    fn();
  } catch (err) {
    expect(isFailedPrecondition(err), String(err)).toBe(true);
    return err as Error;
  }
  throw new Error("expected the body to be refused");
}

// data with CRLFs, dashes and the delimiter itself inside: lengths come from Content-Range, data is never scanned
const tricky = [
  { start: 0, data: Buffer.from(`ab\r\n\r\n--${B}\r\ncd`) },
  { start: 100, data: Buffer.from(`\r\n--${B}--\r\n`) },
  { start: 500, data: Buffer.from("z") },
];
const expected = tricky.map((p) => ({ start: p.start, end: p.start + p.data.length, size: 1000, data: p.data.toString("latin1") }));

describe("ByteRangesParser", () => {
  it("parses a whole body, CRLF and the delimiter inside data included", () => {
    expect(simple(parse([body(tricky)]).map((x) => x.part))).toEqual(expected);
  });

  it("gives the same parts for the body split at every byte position, and fed byte by byte", () => {
    const whole = body(tricky, { preamble: "preamble\r\n" });
    for (let at = 0; at <= whole.length; at++) {
      expect(simple(parse([whole.subarray(0, at), whole.subarray(at)]).map((x) => x.part)), `split at ${at}`).toEqual(expected);
    }
    const bytes = [...whole].map((b) => Buffer.from([b]));
    expect(simple(parse(bytes).map((x) => x.part))).toEqual(expected);
  });

  it("gives the same parts for random splits of a large body", () => {
    const big = [
      { start: 0, data: randomBytes(70_000) },
      { start: 200_000, data: randomBytes(65_536) },
      { start: 100_000, data: randomBytes(1) },
    ];
    const whole = body(big.map((p) => ({ ...p, range: `bytes ${p.start}-${p.start + p.data.length - 1}/*` })));
    for (let round = 0; round < 50; round++) {
      const cuts = [...new Set(Array.from({ length: 1 + (round % 20) }, () => Math.floor(Math.random() * whole.length)))].sort((a, b) => a - b);
      const chunks = [0, ...cuts].map((from, i) => whole.subarray(from, cuts[i] ?? whole.length));
      const parts = parse(chunks).map((x) => x.part);
      expect(parts.map((p) => [p.start, p.end, p.size])).toEqual(big.map((p) => [p.start, p.start + p.data.length, undefined]));
      parts.forEach((p, i) => expect(p.data.equals(big[i]!.data)).toBe(true));
    }
  });

  it("hands each part back as soon as its data and the boundary after it have arrived", () => {
    const whole = body(tricky);
    const endOfData = whole.indexOf(`cd\r\n--${B}`) + 2;
    const afterFirst = endOfData + `\r\n--${B}\r\n`.length;
    const parser = new ByteRangesParser(B);
    expect(parser.push(whole.subarray(0, endOfData))).toEqual([]); // data complete, boundary not yet seen
    expect(simple(parser.push(whole.subarray(endOfData, afterFirst)))).toEqual(expected.slice(0, 1));
    expect(simple(parser.push(whole.subarray(afterFirst)))).toEqual(expected.slice(1));
    parser.end();
  });

  it("skips a preamble (with a line only starting like the boundary) and ignores the epilogue", () => {
    const whole = body(tricky, { preamble: `This is a preamble.\r\n--${B}x not a boundary\r\n\r\n`, close: `\r\n--${B}--\r\nepilogue --${B}\r\ngarbage` });
    expect(simple(parse([whole]).map((x) => x.part))).toEqual(expected);
  });

  it("takes header names in any case, extra headers, padding after the boundary, and a close without CRLF", () => {
    const parts = [
      { start: 3, data: Buffer.from("abc"), headers: ["X-Other: 1", "content-RANGE:   BYTES 3-5/*  "] },
      { start: 7, data: Buffer.from("de"), headers: ["CONTENT-RANGE: bytes 7-8/9"] },
    ];
    const whole = Buffer.from(body(parts, { close: `\r\n--${B}--` }).toString("latin1").replace(`\r\n--${B}\r\n`, `\r\n--${B} \t\r\n`), "latin1");
    expect(simple(parse([whole]).map((x) => x.part))).toEqual([
      { start: 3, end: 6, data: "abc" },
      { start: 7, end: 9, size: 9, data: "de" },
    ]);
  });

  it("passes on a part that coalesces several ranges, in the order the server sent it", () => {
    const data = randomBytes(300);
    const whole = body([{ start: 500, data: Buffer.from("q") }, { start: 0, data }]);
    const parts = parse([whole]).map((x) => x.part);
    expect(parts.map((p) => [p.start, p.end])).toEqual([[500, 501], [0, 300]]);
    expect(parts[1]!.data.equals(data)).toBe(true);
  });

  it("refuses bad, missing and repeated Content-Ranges", () => {
    const cases: [string[], RegExp][] = [
      [["Content-Range: bytes 5-3/1000"], /invalid Content-Range "bytes 5-3\/1000"/],
      [["Content-Range: bytes 0-9/5"], /invalid Content-Range/],
      [["Content-Range: items 0-9/1000"], /invalid Content-Range/],
      [["Content-Range: bytes */1000"], /invalid Content-Range/],
      [["Content-Range: bytes 0-x/1000"], /invalid Content-Range/],
      [["Content-Type: text/plain"], /part 1 has no Content-Range/],
      [["Content-Range: bytes 0-9/1000", "Content-Range: bytes 0-9/1000"], /two Content-Range headers/],
    ];
    for (const [headers, message] of cases) {
      expect(refusal(() => parse([body([{ start: 0, data: Buffer.alloc(10), headers }])])).message).toMatch(message);
    }
    const sizes = body([{ start: 0, data: Buffer.alloc(2) }, { start: 5, data: Buffer.alloc(2), range: "bytes 5-6/2000" }]);
    expect(refusal(() => parse([sizes])).message).toMatch(/part 2 gives blob size 2000, an earlier part 1000/);
  });

  it("refuses data longer or shorter than its Content-Range", () => {
    for (const range of ["bytes 0-8/1000", "bytes 0-10/1000"]) {
      const whole = body([{ start: 0, data: Buffer.from("0123456789"), range }, { start: 20, data: Buffer.from("x") }]);
      expect(refusal(() => parse([whole])).message).toMatch(/part 1 \(Content-Range bytes 0-\d+\/1000\) is not followed by CRLF and the boundary/);
    }
  });

  it("refuses a body that ends early or without the close delimiter, saying where", () => {
    const whole = body(tricky);
    const cases: [Buffer, RegExp][] = [
      [Buffer.alloc(0), /ended before the first boundary/],
      [whole.subarray(0, 20), /ended in the headers of part 1/],
      [whole.subarray(0, whole.indexOf("ab\r\n") + 3), /ended in the data of part 1 \(3 of 25 bytes\)/],
      [body(tricky, { close: "" }), /ended before the boundary after part 3/],
      [body(tricky, { close: `\r\n--${B}` }), /ended without the close delimiter after part 3/],
      [body(tricky, { close: `\r\n--${B}-` }), /ended without the close delimiter after part 3/],
      [body(tricky, { close: `\r\n--${B}\r\n` }), /ended in the headers of part 4/],
    ];
    for (const [bytes, message] of cases) expect(refusal(() => parse([bytes])).message).toMatch(message);
  });

  it("bounds headers, preamble, parts and part size", () => {
    const long = body([{ start: 0, data: Buffer.from("a"), headers: ["X-Pad: " + "p".repeat(9000), "Content-Range: bytes 0-0/1000"] }]);
    expect(refusal(() => parse([long])).message).toMatch(/headers of part 1 longer than 8192 bytes/);
    expect(parse([long], { maxHeaderBytes: 10_000 })).toHaveLength(1);
    expect(refusal(() => parse([body(tricky, { preamble: "x".repeat(9000) })])).message).toMatch(/preamble longer than 8192 bytes/);
    expect(refusal(() => parse([body(tricky)], { maxParts: 2 })).message).toMatch(/more than 2 parts/);
    expect(refusal(() => parse([body(tricky)], { maxPartBytes: 15 })).message).toMatch(/part 1 \(Content-Range bytes 0-24\/1000\) is larger than 15 bytes/);
    // a header section that never ends is refused once over the bound, not buffered
    const parser = new ByteRangesParser(B);
    parser.push(Buffer.from(`--${B}\r\n`));
    expect(refusal(() => { for (let i = 0; i < 10; i++) parser.push(Buffer.alloc(1024, 0x61)); }).message).toMatch(/longer than 8192 bytes/);
  });

  it("refuses malformed header lines, a close delimiter first, and stray bytes after a boundary", () => {
    const cases: [Buffer, RegExp][] = [
      [body([{ start: 0, data: Buffer.from("a"), headers: ["Content-Range: bytes 0-0/1000", " folded"] }]), /folded header line in part 1/],
      [body([{ start: 0, data: Buffer.from("a"), headers: ["Content-Range: bytes 0-0/1000", "no colon here"] }]), /not "name: value"/],
      [body([{ start: 0, data: Buffer.from("a"), headers: ["Content-Range: bytes 0-0/1000", "Bad Name: x"] }]), /not "name: value"/],
      [Buffer.from(`--${B}\r\nContent-Range: bytes 0-0/1000\n\r\na\r\n--${B}--`), /not ended by CRLF/],
      [Buffer.from(`--${B}--\r\n`), /close delimiter before any part/],
      [Buffer.from(`--${B}\n`), /first boundary line not ended by CRLF/],
      [Buffer.from(`--${B}\r\nContent-Range: bytes 0-0/1000\r\n\r\na\r\n--${B}x\r\n`), /unexpected byte 0x78 after the boundary following part 1/],
    ];
    for (const [bytes, message] of cases) expect(refusal(() => parse([bytes])).message).toMatch(message);
  });

  it("returns the parts a chunk completed before a fault in it, then refuses", () => {
    const good = body(tricky.slice(0, 1), { close: "" });
    const parser = new ByteRangesParser(B);
    const bad = Buffer.from(`\r\n--${B}\r\nContent-Range: bytes 100-109/1000\r\n\r\nshort\r\n--${B}--\r\n`);
    expect(simple(parser.push(Buffer.concat([good, bad])))).toEqual(expected.slice(0, 1));
    expect(parser.error?.message).toMatch(/part 2 \(Content-Range bytes 100-109\/1000\) is not followed by CRLF and the boundary/);
    expect(refusal(() => parser.push(Buffer.from("x")))).toBe(parser.error);
    expect(refusal(() => parser.end())).toBe(parser.error);
  });

  it("keeps refusing after the first error", () => {
    const parser = new ByteRangesParser(B);
    const first = refusal(() => parser.push(Buffer.from(`--${B}--\r\n`)));
    expect(parser.error).toBe(first);
    expect(refusal(() => parser.push(Buffer.from("more")))).toBe(first);
    expect(refusal(() => parser.end())).toBe(first);
  });

  it("refuses a boundary RFC 2046 does not allow", () => {
    for (const b of ["", "x".repeat(71), "bad\r\nboundary", "trailing "]) {
      let err: unknown;
      try {
        new ByteRangesParser(b);
      } catch (e) {
        err = e;
      }
      expect(isInvalidArgument(err), JSON.stringify(b)).toBe(true);
    }
  });
});

describe("boundaryOf", () => {
  it("reads the boundary of multipart/byteranges, quoted or not, among other parameters", () => {
    expect(boundaryOf(`multipart/byteranges; boundary=${B}`)).toBe(B);
    expect(boundaryOf(`Multipart/ByteRanges;boundary="a b:c"`)).toBe("a b:c");
    expect(boundaryOf(`multipart/byteranges; charset=x; Boundary="q\\"uo"`)).toBeUndefined(); // a quote is not a bchar
    expect(boundaryOf(`multipart/byteranges; charset="x;y"; boundary=abc ; z=1`)).toBe("abc");
    expect(boundaryOf(`multipart/byteranges; boundary="x\\yz"`)).toBe("xyz");
  });

  it("is undefined for other types, a missing, repeated or invalid boundary, and garbage", () => {
    for (const value of [
      undefined, "", "application/octet-stream", `multipart/form-data; boundary=${B}`, `multipart/byterangesx; boundary=${B}`,
      "multipart/byteranges", "multipart/byteranges; boundary=", `multipart/byteranges; boundary=a; boundary=b`,
      `multipart/byteranges; boundary=${"x".repeat(71)}`, `multipart/byteranges; boundary="trailing "`, "multipart/byteranges; boundary=a b",
    ]) {
      expect(boundaryOf(value), String(value)).toBeUndefined();
    }
  });
});

describe("multiRangeHeader", () => {
  it("lists inclusive ranges in the order given", () => {
    expect(multiRangeHeader([{ offset: 100, length: 50 }, { offset: 0, length: 1 }])).toBe("bytes=100-149,0-0");
    expect(multiRangeHeader([{ offset: 7, length: 65_536 }])).toBe("bytes=7-65542");
  });

  it("refuses no ranges, an empty range and an invalid one", () => {
    for (const ranges of [[], [{ offset: 0, length: 0 }], [{ offset: -1, length: 5 }], [{ offset: 0, length: 1.5 }]]) {
      let err: unknown;
      try {
        multiRangeHeader(ranges);
      } catch (e) {
        err = e;
      }
      expect(isInvalidArgument(err), JSON.stringify(ranges)).toBe(true);
    }
  });
});
