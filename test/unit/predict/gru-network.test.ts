import { describe, it, expect } from "vitest";
import { GruNetwork, parameterCount, seededRandom, type GruShape } from "../../../snapshotter/predict/gru-network.js";
import { DEFAULT_TRAINING, GruTrainer, type TrainingSequence } from "../../../snapshotter/predict/gru-training.js";

const shape: GruShape = { inputs: 6, outputs: 4, embed: 5, hidden: 6 };
const seq: TrainingSequence = { inputs: Int32Array.from([0, 2, 3, 5, 4, 2]), targets: Int32Array.from([0, 1, -1, 3, 2, 0]) };

/** The loss of `net` on `seq` from a zero state (no update). */
function lossOf(net: GruNetwork): number {
  const t = new GruTrainer(net, DEFAULT_TRAINING);
  return t.accumulate(seq, 0, seq.inputs.length, new Float32Array(shape.hidden)).loss;
}

describe("GRU network", () => {
  it("lays its weights out in one buffer of parameterCount values", () => {
    const net = GruNetwork.initial(shape, seededRandom(3));
    expect(net.params.length).toBe(parameterCount(shape));
    const parts = [net.emb, net.wx, net.uh, net.bx, net.bh, net.wo, net.bo];
    expect(parts.reduce((n, p) => n + p.length, 0)).toBe(net.params.length);
    expect(() => new GruNetwork(shape, new Float32Array(3))).toThrow(RangeError);
  });

  it("computes gradients that match finite differences (BPTT through every part)", () => {
    const net = GruNetwork.initial(shape, seededRandom(7));
    // biases start at zero; give them values so their gradients are exercised off the symmetric point
    const r = seededRandom(11);
    for (const b of [net.bx, net.bh, net.bo]) for (let i = 0; i < b.length; i++) b[i] = (r() - 0.5) * 0.4;
    const trainer = new GruTrainer(net, DEFAULT_TRAINING);
    const h = new Float32Array(shape.hidden);
    trainer.accumulate(seq, 0, seq.inputs.length, h);
    const analytic = Float32Array.from(trainer.grad.params);
    const eps = 1e-2;
    let checked = 0;
    for (let i = 0; i < net.params.length; i++) {
      const keep = net.params[i] as number;
      net.params[i] = keep + eps;
      const up = lossOf(net);
      net.params[i] = keep - eps;
      const down = lossOf(net);
      net.params[i] = keep;
      const numeric = (up - down) / (2 * eps);
      expect(Math.abs(numeric - (analytic[i] as number))).toBeLessThan(2e-3 + 0.02 * Math.abs(numeric));
      checked++;
    }
    expect(checked).toBe(net.params.length);
    expect(analytic.some((g) => Math.abs(g) > 1e-3)).toBe(true);
  });

  it("carries the state across truncated-BPTT chunks like one pass forward", () => {
    const net = GruNetwork.initial(shape, seededRandom(5));
    const whole = new GruTrainer(net).accumulate(seq, 0, 6, new Float32Array(shape.hidden)).loss;
    const t = new GruTrainer(net);
    const h = new Float32Array(shape.hidden);
    const first = t.accumulate(seq, 0, 3, h).loss;
    const second = t.accumulate(seq, 3, 6, h).loss;
    expect(first + second).toBeCloseTo(whole, 4);
  });

  it("lowers the loss with Adam steps", () => {
    const net = GruNetwork.initial(shape, seededRandom(9));
    const before = lossOf(net);
    const t = new GruTrainer(net, { ...DEFAULT_TRAINING, learningRate: 0.05 });
    for (let i = 0; i < 50; i++) {
      t.accumulate(seq, 0, seq.inputs.length, new Float32Array(shape.hidden));
      t.apply();
    }
    expect(lossOf(net)).toBeLessThan(before / 4);
  });
});
