import { describe, expect, it } from "vitest";
import { gzipSync } from "node:zlib";
import { Readable } from "node:stream";
import { compress } from "zstd-napi";
import { layerTar } from "../../../scripts/images/oci-image.js";
import { buildTarIndex } from "../../../snapshotter/layer/tar-index.js";
import { decodeFrom } from "../../../snapshotter/layer/decoders.js";
import { TRIM_INPUT_BYTES, trimWindows, trimmedWindow } from "../../../snapshotter/layer/window-trim.js";
import { chunks, noise, sha256 } from "./helpers.js";

const GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";

/** A layer of source-like text: deflate refers back often, but not to every byte of a window. */
async function textLayer(): Promise<Buffer> {
  const words = noise(1 << 20, 3).toString("latin1").match(/.{1,7}/g) as string[];
  const files = Array.from({ length: 24 }, (_, f) => ({
    type: "file" as const,
    path: `lib/mod${f}.py`,
    content: Buffer.from(Array.from({ length: 3000 }, (_, i) => `def ${words[(i * 7 + f) % words.length]}(x): return ${i % 97}\n`).join("")),
  }));
  return gzipSync(await layerTar(files));
}

describe("trimmed windows", () => {
  it("zero what no back-reference reaches, decode exactly what the full window does, and cost far fewer bytes zstd'd", async () => {
    const gz = await textLayer();
    const idx = await buildTarIndex(chunks(gz), { digest: sha256(gz), mediaType: GZIP, spanSize: 64 << 10 });
    const points = idx.spans.filter((s) => s.window && s.window.length > 0);
    expect(points.length).toBeGreaterThan(5);
    const trimmed = await trimWindows(idx.spans, Readable.from(chunks(gz)));
    expect(trimmed.size).toBe(points.length);
    let full = 0;
    let kept = 0;
    for (const p of points) {
      const w = trimmed.get(p) as Buffer;
      expect(w.length).toBe((p.window as Buffer).length);
      const input = gz.subarray(p.in - (p.bits ? 1 : 0));
      // the whole rest of the span, far past the window's reach, decodes the same
      const length = Math.min(256 << 10, idx.uncompressedSize - p.out);
      expect(decodeFrom("gzip", input, { ...p, window: w }, 0, length).equals(decodeFrom("gzip", input, p, 0, length))).toBe(true);
      full += compress(p.window as Buffer).length;
      kept += compress(w).length;
    }
    expect(kept).toBeLessThan(full * 0.8);
  });

  it("a point whose input is cut short of the window's reach is left whole", async () => {
    const gz = await textLayer();
    const idx = await buildTarIndex(chunks(gz), { digest: sha256(gz), mediaType: GZIP, spanSize: 64 << 10 });
    const p = idx.spans.find((s) => s.window && s.window.length > 0 && s.in + TRIM_INPUT_BYTES < gz.length);
    expect(p).toBeDefined();
    if (!p) return;
    const input = gz.subarray(p.in - (p.bits ? 1 : 0), p.in + 64);
    expect(trimmedWindow(input, p, false)).toBeUndefined();
    expect(trimmedWindow(gz.subarray(p.in - (p.bits ? 1 : 0)), p, true)).toBeDefined();
  });
});
