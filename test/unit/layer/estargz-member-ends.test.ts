// Where an eStargz chunk's gzip member ends comes from the blob's order of
// members, not the TOC's order of entries: a TOC listing them out of order
// must not give a member an end before its start.
import { describe, expect, it } from "vitest";
import { memberEnds } from "../../../snapshotter/layer/estargz.js";
import type { TocEntry } from "../../../snapshotter/layer/estargz-toc.js";

const TOC_AT = 1000;
const entries: TocEntry[] = [
  { name: "d/", type: "dir" },
  { name: "d/a", type: "reg", size: 10, offset: 100 },
  { name: "d/b", type: "reg", size: 5000, offset: 200, chunkSize: 4000 },
  { name: "d/b", type: "chunk", offset: 300, chunkOffset: 4000, chunkSize: 1000 },
  // packed into the member at 300, after b's second chunk
  { name: "d/c", type: "reg", size: 3, offset: 300, innerOffset: 1000 },
  { name: "d/e", type: "reg", size: 7, offset: 600 },
];

describe("eStargz member ends", () => {
  it("in TOC order: each member ends where the next one starts, the last at the TOC", () => {
    expect(memberEnds(entries, TOC_AT)).toEqual([100, 200, 300, 600, 600, 1000]);
  });

  it("with the TOC's entries out of blob order: the same ends for the same entries", () => {
    const order = [5, 2, 0, 4, 1, 3];
    const shuffled = order.map((i) => entries[i] as TocEntry);
    const inOrder = memberEnds(entries, TOC_AT);
    const ends = memberEnds(shuffled, TOC_AT);
    order.forEach((i, k) => expect(ends[k], shuffled[k]?.name).toBe(inOrder[i]));
    shuffled.forEach((e, k) => {
      if (e.offset) expect(ends[k] as number).toBeGreaterThan(e.offset);
    });
  });
});
