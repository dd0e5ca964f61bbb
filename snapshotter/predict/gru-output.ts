// The output layer of a trained GRU, as a rollout uses it: the logits of the
// candidate files given a state, and the likeliest one not excluded. It is
// the cost of a rollout step (4096 rows × 64 weights), so it runs in
// WebAssembly SIMD (gru-output.wat) on a copy of the layer's weights: 0.03 ms
// for 4096 rows here, against 0.30 ms for GruNetwork.logits in JavaScript.
// Where WebAssembly SIMD is missing, or the hidden size is not a multiple of
// 16, the JavaScript loop does the same sums.
import type { GruNetwork } from "./gru-network.js";
import { GRU_OUTPUT_WASM } from "./gru-output-wasm.js";

type LogitsKernel = (wo: number, bo: number, h: number, rows: number, n: number, out: number, hidden: number) => void;

let compiled: WebAssembly.Module | null | undefined;

/** The compiled kernel, or undefined where this runtime cannot run it. */
function kernelModule(): WebAssembly.Module | undefined {
  if (compiled === undefined) {
    const bytes = Buffer.from(GRU_OUTPUT_WASM, "base64");
    compiled = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
  }
  return compiled ?? undefined;
}

const PAGE = 65536;
const align16 = (n: number): number => Math.ceil(n / 16) * 16;

/** The kernel's memory: the weights, then room for one call's state, rows and logits. */
class WasmOutput {
  readonly #logits: LogitsKernel;
  readonly #at: { wo: number; bo: number; h: number; rows: number; out: number };
  readonly #h: Float32Array;
  readonly #rows: Int32Array;
  readonly #out: Float32Array;

  constructor(module: WebAssembly.Module, readonly net: GruNetwork) {
    const { outputs, hidden } = net.shape;
    const instance = new WebAssembly.Instance(module, {});
    const memory = instance.exports.memory as WebAssembly.Memory;
    this.#logits = instance.exports.logits as LogitsKernel;
    const wo = 0;
    const bo = align16(wo + outputs * hidden * 4);
    const h = align16(bo + outputs * 4);
    const rows = align16(h + hidden * 4);
    const out = align16(rows + outputs * 4);
    const end = out + outputs * 4;
    const pages = Math.ceil(end / PAGE) - memory.buffer.byteLength / PAGE;
    if (pages > 0) memory.grow(pages);
    this.#at = { wo, bo, h, rows, out };
    new Float32Array(memory.buffer, wo, outputs * hidden).set(net.wo);
    new Float32Array(memory.buffer, bo, outputs).set(net.bo);
    this.#h = new Float32Array(memory.buffer, h, hidden);
    this.#rows = new Int32Array(memory.buffer, rows, outputs);
    this.#out = new Float32Array(memory.buffer, out, outputs);
  }

  logits(h: Float32Array, rows: Int32Array, out: Float32Array): void {
    const at = this.#at;
    this.#h.set(h);
    this.#rows.set(rows);
    this.#logits(at.wo, at.bo, at.h, at.rows, rows.length, at.out, this.net.shape.hidden);
    out.set(this.#out.subarray(0, rows.length));
  }
}

export class OutputLayer {
  readonly #wasm: WasmOutput | undefined;

  /** `wasm: false` keeps to JavaScript (tests compare the two). */
  constructor(readonly net: GruNetwork, opts: { wasm?: boolean } = {}) {
    const module = opts.wasm === false || net.shape.hidden % 16 !== 0 ? undefined : kernelModule();
    this.#wasm = module ? new WasmOutput(module, net) : undefined;
  }

  /** Whether the WebAssembly kernel computes the logits. */
  get accelerated(): boolean {
    return this.#wasm !== undefined;
  }

  /**
   * The logits of output `rows` given state `h` into `out` (out[i] for
   * rows[i]), -Infinity where `skip[row]` is set; returns the index in `rows`
   * of the largest, or -1.
   */
  logits(h: Float32Array, rows: Int32Array, skip: Uint8Array, out: Float32Array): number {
    if (!this.#wasm) return this.net.logits(h, rows, skip, out);
    this.#wasm.logits(h, rows, out);
    let best = -1;
    let max = -Infinity;
    for (let i = 0; i < rows.length; i++) {
      if (skip[rows[i] as number]) {
        out[i] = -Infinity;
        continue;
      }
      const l = out[i] as number;
      if (l > max) {
        max = l;
        best = i;
      }
    }
    return best;
  }
}
