// Training a GruNetwork: next-token cross-entropy, truncated backpropagation
// through time (chunks of `chunk` steps, the state carried across chunks of
// a sequence), gradients clipped by global norm, Adam. Synchronous and
// free of globals, so a worker thread can run it on a copy of the weights;
// bounded in time (epochs and milliseconds) and memory (one chunk of
// activations, plus gradients and Adam's two moments: 4 × the weights).
import { axpy, GruNetwork, seededRandom, type StepCache } from "./gru-network.js";

export interface TrainingSequence {
  /** Input token per step. */
  inputs: Int32Array;
  /** Output token expected after each step's input, or -1 where nothing is to be learned. */
  targets: Int32Array;
}

export interface GruTrainingOptions {
  /** At most this many passes over the sequences. */
  epochs: number;
  /** Stop starting epochs (and chunks) once this many ms have gone by. */
  timeMs: number;
  /** Steps per truncated-BPTT chunk. */
  chunk: number;
  learningRate: number;
  /** Global gradient norm clip. */
  clip: number;
  /** Shuffles the sequences each epoch. */
  seed: number;
  /** Stop once an epoch's mean loss is below this (nats per target). */
  targetLoss: number;
}

export const DEFAULT_TRAINING: GruTrainingOptions = {
  epochs: 30, timeMs: 10_000, chunk: 32, learningRate: 0.01, clip: 5, seed: 1, targetLoss: 0.01,
};

export interface TrainingReport {
  epochs: number;
  ms: number;
  /** Mean loss of the last epoch, nats per target. */
  loss: number;
  /** Whether training stopped on its time budget rather than epochs or loss. */
  outOfTime: boolean;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const EPSILON = 1e-8;

export class GruTrainer {
  readonly grad: GruNetwork;
  readonly #m: Float32Array;
  readonly #v: Float32Array;
  #t = 0;
  readonly #probs: Float32Array;

  constructor(readonly net: GruNetwork, readonly opts: GruTrainingOptions = DEFAULT_TRAINING) {
    this.grad = new GruNetwork(net.shape);
    this.#m = new Float32Array(net.params.length);
    this.#v = new Float32Array(net.params.length);
    this.#probs = new Float32Array(net.shape.outputs);
  }

  /**
   * Forward and backward over steps [from, to) of `seq` starting from state
   * `h` (updated to the state after `to`), adding the gradients to this.grad.
   * Returns the summed loss and how many targets it covered.
   */
  accumulate(seq: TrainingSequence, from: number, to: number, h: Float32Array): { loss: number; targets: number } {
    const net = this.net;
    const g = this.grad;
    const { hidden: H, outputs: V } = net.shape;
    const T = to - from;
    const hs = new Float32Array((T + 1) * H);
    hs.set(h);
    const gates = { z: new Float32Array(T * H), r: new Float32Array(T * H), n: new Float32Array(T * H), hn: new Float32Array(T * H) };
    const cacheAt = (t: number): StepCache => ({
      z: gates.z.subarray(t * H, (t + 1) * H), r: gates.r.subarray(t * H, (t + 1) * H),
      n: gates.n.subarray(t * H, (t + 1) * H), hn: gates.hn.subarray(t * H, (t + 1) * H),
    });
    const dhOut = new Float32Array(T * H);
    const p = this.#probs;
    let loss = 0;
    let targets = 0;
    for (let t = 0; t < T; t++) {
      const hPrev = hs.subarray(t * H, (t + 1) * H);
      const hNext = hs.subarray((t + 1) * H, (t + 2) * H);
      net.step(seq.inputs[from + t] as number, hPrev, hNext, cacheAt(t));
      const target = seq.targets[from + t] as number;
      if (target < 0) continue;
      // softmax cross-entropy; d loss / d logits = p - onehot(target)
      let max = -Infinity;
      for (let o = 0; o < V; o++) {
        const l = net.logit(o, hNext);
        p[o] = l;
        if (l > max) max = l;
      }
      let sum = 0;
      for (let o = 0; o < V; o++) sum += p[o] = Math.exp((p[o] as number) - max);
      for (let o = 0; o < V; o++) p[o] = (p[o] as number) / sum;
      loss -= Math.log(Math.max(p[target] as number, 1e-30));
      targets++;
      p[target] = (p[target] as number) - 1;
      const dh = dhOut.subarray(t * H, (t + 1) * H);
      for (let o = 0; o < V; o++) {
        const d = p[o] as number;
        g.bo[o] = (g.bo[o] as number) + d;
        axpy(d, hNext, 0, g.wo, o * H, H);
        axpy(d, net.wo, o * H, dh, 0, H);
      }
    }
    h.set(hs.subarray(T * H));
    this.#backward(seq, from, T, hs, gates, dhOut);
    return { loss, targets };
  }

  #backward(seq: TrainingSequence, from: number, T: number, hs: Float32Array, gates: Record<keyof StepCache, Float32Array>, dhOut: Float32Array): void {
    const net = this.net;
    const g = this.grad;
    const { embed: E, hidden: H } = net.shape;
    const dh = new Float32Array(H);
    const dax = new Float32Array(3 * H);
    const dah = new Float32Array(3 * H);
    const dhPrev = new Float32Array(H);
    for (let t = T - 1; t >= 0; t--) {
      for (let j = 0; j < H; j++) dh[j] = (dh[j] as number) + (dhOut[t * H + j] as number);
      const at = t * H;
      for (let j = 0; j < H; j++) {
        const z = gates.z[at + j] as number;
        const r = gates.r[at + j] as number;
        const n = gates.n[at + j] as number;
        const hn = gates.hn[at + j] as number;
        const hp = hs[at + j] as number;
        const d = dh[j] as number;
        const dn = d * (1 - z);
        const dz = d * (hp - n);
        dhPrev[j] = d * z;
        const dan = dn * (1 - n * n);
        const dr = dan * hn;
        dax[j] = dah[j] = dz * z * (1 - z);
        dax[H + j] = dah[H + j] = dr * r * (1 - r);
        dax[2 * H + j] = dan;
        dah[2 * H + j] = dan * r;
      }
      const token = seq.inputs[from + t] as number;
      const xAt = token * E;
      for (let j = 0; j < 3 * H; j++) {
        const a = dax[j] as number;
        const b = dah[j] as number;
        g.bx[j] = (g.bx[j] as number) + a;
        g.bh[j] = (g.bh[j] as number) + b;
        axpy(a, net.emb, xAt, g.wx, j * E, E);
        axpy(a, net.wx, j * E, g.emb, xAt, E);
        axpy(b, hs, at, g.uh, j * H, H);
        axpy(b, net.uh, j * H, dhPrev, 0, H);
      }
      dh.set(dhPrev);
    }
  }

  /** Clips, applies Adam to the accumulated gradients, and clears them. */
  apply(): void {
    const w = this.net.params;
    const gr = this.grad.params;
    let norm = 0;
    for (let i = 0; i < gr.length; i++) norm += (gr[i] as number) ** 2;
    norm = Math.sqrt(norm);
    const scale = norm > this.opts.clip ? this.opts.clip / norm : 1;
    this.#t++;
    const lr = (this.opts.learningRate * Math.sqrt(1 - BETA2 ** this.#t)) / (1 - BETA1 ** this.#t);
    const m = this.#m;
    const v = this.#v;
    for (let i = 0; i < w.length; i++) {
      const gi = (gr[i] as number) * scale;
      const mi = (m[i] = BETA1 * (m[i] as number) + (1 - BETA1) * gi);
      const vi = (v[i] = BETA2 * (v[i] as number) + (1 - BETA2) * gi * gi);
      w[i] = (w[i] as number) - (lr * mi) / (Math.sqrt(vi) + EPSILON);
    }
    gr.fill(0);
  }

  /** One pass over `seqs` in a seeded random order: the mean loss per target, and whether it ran to the end before `deadline` (performance.now()). */
  epoch(seqs: readonly TrainingSequence[], random: () => number, deadline = Infinity): { loss: number; complete: boolean } {
    const order = seqs.map((_, i) => i);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [order[i], order[j]] = [order[j] as number, order[i] as number];
    }
    const h = new Float32Array(this.net.shape.hidden);
    let loss = 0;
    let targets = 0;
    for (const i of order) {
      const seq = seqs[i] as TrainingSequence;
      h.fill(0);
      for (let from = 0; from < seq.inputs.length; from += this.opts.chunk) {
        if (performance.now() > deadline) return { loss: targets ? loss / targets : Infinity, complete: false };
        const r = this.accumulate(seq, from, Math.min(seq.inputs.length, from + this.opts.chunk), h);
        this.apply();
        loss += r.loss;
        targets += r.targets;
      }
    }
    return { loss: targets ? loss / targets : 0, complete: true };
  }
}

/** Trains `net` on `seqs` within the options' budgets, yielding to the event loop between epochs. */
export async function trainGru(net: GruNetwork, seqs: readonly TrainingSequence[], opts: GruTrainingOptions = DEFAULT_TRAINING): Promise<TrainingReport> {
  const trainer = new GruTrainer(net, opts);
  const random = seededRandom(opts.seed);
  const start = performance.now();
  const deadline = start + opts.timeMs;
  let loss = Infinity;
  let epochs = 0;
  let outOfTime = false;
  while (epochs < opts.epochs && !(loss < opts.targetLoss)) {
    if (performance.now() > deadline) {
      outOfTime = true;
      break;
    }
    const e = trainer.epoch(seqs, random, deadline);
    loss = e.loss;
    epochs++;
    if (!e.complete) {
      outOfTime = true;
      break;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return { epochs, ms: performance.now() - start, loss, outOfTime };
}
