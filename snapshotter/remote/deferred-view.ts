// The view of a layer whose index is still being built (first contact): every
// question waits for the index. Nothing is answered from a layer before its
// blob has matched its digest, so a tampered blob never shows a single wrong
// byte or name. An attempt that failed (registry gone, bad bytes) is retried
// by the next question, so the layer recovers once the registry is back.
import type { LayerIndex } from "../layer/layer-index.js";
import type { LayerView } from "../layer/layer-view.js";

export class DeferredView implements LayerView {
  #attempt: Promise<LayerIndex> | undefined;
  #index: LayerIndex | undefined;

  constructor(
    readonly digest: string,
    private readonly build: () => Promise<LayerIndex>,
  ) {}

  /** Starts building now (at mount), rather than at the first question. */
  start(): Promise<LayerIndex> {
    if (this.#index) return Promise.resolve(this.#index);
    if (!this.#attempt) {
      const attempt = this.build().then((index) => (this.#index = index));
      attempt.catch(() => {
        if (this.#attempt === attempt) this.#attempt = undefined;
      });
      this.#attempt = attempt;
    }
    return this.#attempt;
  }

  /** The index if it is complete. */
  get ready(): LayerIndex | undefined {
    return this.#index;
  }

  async getAttr(path: string) {
    return (await this.start()).getAttr(path);
  }

  async lookup(parentPath: string, name: string) {
    return (await this.start()).lookup(parentPath, name);
  }

  async readdir(path: string) {
    return (await this.start()).readdir(path);
  }

  async readFile(path: string, offset: number, length: number): Promise<Buffer> {
    return (await this.start()).readFile(path, offset, length);
  }

  async hasXattrs(): Promise<boolean> {
    return (await this.start()).hasXattrs;
  }
}
