// A file fetched ahead (as the prefetcher does) and then read the way FUSE
// reads it, 128 KiB at a time: its span is decoded from the access point
// a few times, not once per read, and the cells fetched ahead count as used.
import { describe, it, expect, vi } from "vitest";
import { gzipSync } from "node:zlib";
import { layerTar } from "../../../scripts/images/oci-image.js";
import { buildTarIndex } from "../../../snapshotter/layer/tar-index.js";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import { FetchScheduler } from "../../../snapshotter/prefetch/scheduler.js";
import { chunks, countingSource, noise, sha256 } from "./helpers.js";

const decoding = vi.hoisted(() => ({ calls: 0, bytes: 0 }));
vi.mock("../../../snapshotter/layer/decoders.js", async (original) => {
  const m = await original<typeof import("../../../snapshotter/layer/decoders.js")>();
  return {
    ...m,
    decodeFrom: (...args: Parameters<typeof m.decodeFrom>): Buffer => {
      const out = m.decodeFrom(...args);
      decoding.calls++;
      decoding.bytes += out.length;
      return out;
    },
  };
});

const MiB = 1 << 20;
const READ = 128 << 10;

describe("reading a file fetched ahead", () => {
  it("decodes its span a few times, not once per read, and counts every cell fetched ahead as used", async () => {
    // half noise, half text: about 2.5 MiB of gzip for a 4 MiB file, one span
    const content = Buffer.concat([noise(2 * MiB, 3), Buffer.from("a line of a text file\n".repeat((2 * MiB) / 22 + 1)).subarray(0, 2 * MiB)]);
    const blob = gzipSync(await layerTar([{ type: "file", path: "big.bin", content }]));
    const idx = await buildTarIndex(chunks(blob), { digest: sha256(blob), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", spanSize: 16 * MiB });
    expect(idx.spans).toHaveLength(1);
    const queue = new FetchScheduler();
    const layer = new TarLayerIndex(idx, countingSource(blob), { queue });
    layer.fetchAhead([{ path: "big.bin", ranges: [{ offset: 0, length: content.length }] }], { priority: "soon", maxRequestBytes: MiB });
    await queue.idle();
    const reads = content.length / READ;
    for (let at = 0; at < content.length; at += READ) {
      expect((await layer.readFile("big.bin", at, READ)).equals(content.subarray(at, at + READ))).toBe(true);
    }
    // decoding on through the cells already here, 512 KiB of them at a time: 3 decodes, 9.4 MB decoded;
    // without, each read that went past the decoded prefix decoded the span from its point again:
    // 17 decodes, 24.2 MB decoded for this 4 MiB file
    expect(decoding.calls).toBeLessThanOrEqual(reads / 4);
    expect(decoding.bytes).toBeLessThan(4 * content.length);
    const st = layer.fetchStats;
    expect(st.readMissBytes).toBe(0);
    expect(st.aheadUsedBytes).toBe(st.aheadBytes.soon); // precision 1: every cell fetched ahead was read
  });
});
