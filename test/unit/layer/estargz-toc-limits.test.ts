// The eStargz footer and TOC come from the registry: a footer pointing at
// the start of a gzip bomb must cost a bounded fetch and a bounded inflate,
// off the event loop, and be refused at once.
import { describe, expect, it } from "vitest";
import { gzipSync } from "node:zlib";
import { layerTar } from "../../../scripts/images/oci-image.js";
import { EStargzLayerIndex } from "../../../snapshotter/layer/estargz.js";
import { loadToc, MAX_TOC_BYTES, parseFooter } from "../../../snapshotter/layer/estargz-toc.js";
import { LayerVerificationError } from "../../../snapshotter/fetch/verification.js";
import { countingSource, sha256 } from "./helpers.js";
import { estargzFooter } from "../../harness/hostile-blobs.js";


describe("eStargz TOC limits", () => {
  it("a TOC member that inflates past the limit is refused, and the event loop keeps turning meanwhile", async () => {
    const bomb = gzipSync(Buffer.alloc(MAX_TOC_BYTES + (8 << 20)), { level: 9 });
    expect(bomb.length).toBeLessThan(1 << 20);
    const blob = Buffer.concat([bomb, estargzFooter(0)]);
    expect(parseFooter(blob.subarray(blob.length - 51)).tocOffset).toBe(0);
    let turns = 0;
    const ticker = setInterval(() => turns++, 1);
    try {
      const err = await loadToc(countingSource(blob), sha256(blob)).then(() => undefined, (e: unknown) => e);
      expect(err).toBeInstanceOf(LayerVerificationError);
      expect(String(err)).toContain(`TOC decompresses to more than the ${MAX_TOC_BYTES} bytes allowed`);
    } finally {
      clearInterval(ticker);
    }
    // the inflate ran on the thread pool: timers fired while it ran
    expect(turns).toBeGreaterThan(0);
  });

  it("a footer pointing further back than the limit is refused before the TOC is fetched", async () => {
    const size = MAX_TOC_BYTES + 1024 + 51;
    const tail = estargzFooter(0);
    const calls: { offset: number; length: number }[] = [];
    const source = {
      size,
      read: async (offset: number, length: number): Promise<Buffer> => {
        calls.push({ offset, length });
        if (offset === size - 51 && length === 51) return tail;
        return Buffer.alloc(length);
      },
    };
    await expect(loadToc(source, "sha256:big")).rejects.toThrow(`TOC gzip member is ${MAX_TOC_BYTES + 1024} bytes, more than the ${MAX_TOC_BYTES} allowed`);
    expect(calls).toEqual([{ offset: size - 51, length: 51 }]);
  });
});

describe("eStargz chunk limits", () => {
  it("a chunk whose gzip member inflates far past the chunk is refused without inflating it all", async () => {
    // the file's member: 100 MiB of zeros for a 10-byte file
    const member = gzipSync(Buffer.alloc(100 << 20), { level: 9 });
    const toc = { version: 1, entries: [{ name: "big", type: "reg", size: 10, offset: 0, chunkDigest: `sha256:${"0".repeat(64)}` }] };
    const tocMember = gzipSync(await layerTar([{ type: "file", path: "stargz.index.json", content: Buffer.from(JSON.stringify(toc)) }]));
    const blob = Buffer.concat([member, tocMember, estargzFooter(member.length)]);
    const layer = await EStargzLayerIndex.open(countingSource(blob), { digest: sha256(blob) });
    await expect(layer.readFile("big", 0, 10)).rejects.toThrow(`chunk at 0 inflates to more than ${64 << 20} bytes`);
  });
});
