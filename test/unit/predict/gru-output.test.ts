import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { GruNetwork, seededRandom } from "../../../snapshotter/predict/gru-network.js";
import { OutputLayer } from "../../../snapshotter/predict/gru-output.js";
import { embeddedWasm, predictSources } from "../../../scripts/embed-wasm.js";

const shape = { inputs: 302, outputs: 300, embed: 8, hidden: 32 };

function random(n: number, seed: number): Float32Array {
  const r = seededRandom(seed);
  return Float32Array.from({ length: n }, () => 2 * r() - 1);
}

describe("the GRU's output layer", () => {
  it("embeds the bytes gru-output.wat compiles to (else: npm run build && node dist/scripts/embed-wasm.js)", async () => {
    const { text } = await embeddedWasm();
    expect(readFileSync(join(predictSources(), "gru-output-wasm.ts"), "utf8")).toBe(text);
  });

  it("computes in WebAssembly the logits JavaScript computes, skipping the excluded rows", () => {
    const net = GruNetwork.initial(shape, seededRandom(3));
    net.bo.set(random(shape.outputs, 4));
    const wasm = new OutputLayer(net);
    const js = new OutputLayer(net, { wasm: false });
    expect(wasm.accelerated).toBe(true);
    expect(js.accelerated).toBe(false);
    const rows = Int32Array.from([299, 0, 17, 150, 151, 3, 42]);
    const skip = new Uint8Array(shape.outputs);
    skip[17] = 1;
    for (let seed = 10; seed < 20; seed++) {
      const h = random(shape.hidden, seed);
      const a = new Float32Array(rows.length);
      const b = new Float32Array(rows.length);
      const best = wasm.logits(h, rows, skip, a);
      expect(best).toBe(js.logits(h, rows, skip, b));
      expect(a[2]).toBe(-Infinity);
      for (let i = 0; i < rows.length; i++) {
        if (i === 2) continue;
        const row = rows[i] as number;
        let want = net.bo[row] as number;
        for (let k = 0; k < shape.hidden; k++) want += (net.wo[row * shape.hidden + k] as number) * (h[k] as number);
        expect(a[i]).toBeCloseTo(want, 4);
        expect(b[i]).toBeCloseTo(want, 4);
      }
      expect(a[best]).toBe(Math.max(...a));
    }
  });

  it("keeps to JavaScript for a hidden size the kernel does not take, with the same answer", () => {
    const net = GruNetwork.initial({ ...shape, hidden: 20 }, seededRandom(5));
    const layer = new OutputLayer(net);
    expect(layer.accelerated).toBe(false);
    const h = random(20, 6);
    const rows = Int32Array.from({ length: 300 }, (_, i) => i);
    const out = new Float32Array(300);
    const best = layer.logits(h, rows, new Uint8Array(300), out);
    expect(best).toBe(net.logits(h, rows, new Uint8Array(300), new Float32Array(300)));
    expect(out[best]).toBe(Math.max(...out));
  });

  it("takes as many candidate rows as the layer has", () => {
    const net = GruNetwork.initial({ ...shape, outputs: 5000, inputs: 5002, hidden: 64 }, seededRandom(7));
    const layer = new OutputLayer(net);
    const rows = Int32Array.from({ length: 5000 }, (_, i) => 4999 - i);
    const h = random(64, 8);
    const out = new Float32Array(5000);
    const best = layer.logits(h, rows, new Uint8Array(5000), out);
    const want = net.logits(h, rows, new Uint8Array(5000), new Float32Array(5000));
    expect(best).toBe(want);
    expect(out[4999]).toBeCloseTo(net.logit(0, h), 4);
  });
});
