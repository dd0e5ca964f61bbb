// The view of a layer whose index is still being built or fetched: every
// question waits for the index. Nothing is answered from a layer before its
// blob has matched its digest or (an index made elsewhere) before the entry
// asked about has matched its tar header (LayerIndex.check). An index caught
// saying something the tar does not is dropped, logged once, and the layer is
// read without it from then on (`fallback`: streaming it whole); nothing it
// said of that entry was served. An attempt that failed for want of the
// registry is retried by the next question, so the layer recovers once the
// registry is back; one that failed on the layer's own bytes (a bad digest, a
// tar header over its limits) is remembered for FAILED_LAYER_MS, so every
// lookup in that time fails at once instead of streaming the layer again.
import { errorMessage, InvalidArgumentError } from "../errdefs/errors.js";
import { IndexMismatchError, LayerVerificationError } from "../fetch/verification.js";
import type { LayerEntry, LayerIndex } from "../layer/layer-index.js";
import type { LayerView } from "../layer/layer-view.js";
import { logger } from "../util/logging.js";

const log = logger("remote");

/** How long a layer whose bytes failed stays failed before a question tries it again. */
export const FAILED_LAYER_MS = 60_000;

export class DeferredView implements LayerView {
  #attempt: Promise<LayerIndex> | undefined;
  #index: LayerIndex | undefined;
  #build: () => Promise<LayerIndex>;

  constructor(
    readonly digest: string,
    build: () => Promise<LayerIndex>,
    /** How to open the layer without the index that lied (see the top of this file). */
    private readonly fallback?: () => Promise<LayerIndex>,
  ) {
    this.#build = build;
  }

  /** Starts building now (at mount), rather than at the first question. */
  start(): Promise<LayerIndex> {
    if (this.#index) return Promise.resolve(this.#index);
    if (!this.#attempt) {
      const attempt = this.#build().then((index) => (this.#index = index));
      attempt.catch((err: unknown) => {
        const forget = (): void => {
          if (this.#attempt === attempt) this.#attempt = undefined;
        };
        if (err instanceof LayerVerificationError || err instanceof InvalidArgumentError) setTimeout(forget, FAILED_LAYER_MS).unref();
        else forget();
      });
      this.#attempt = attempt;
    }
    return this.#attempt;
  }

  /** The index if it is complete. */
  get ready(): LayerIndex | undefined {
    return this.#index;
  }

  async getAttr(path: string): Promise<LayerEntry | undefined> {
    return this.#ask(path, (i) => i.getAttr(path));
  }

  async lookup(parentPath: string, name: string): Promise<LayerEntry | undefined> {
    return this.#ask(parentPath === "" ? name : `${parentPath}/${name}`, (i) => i.lookup(parentPath, name));
  }

  async readdir(path: string): Promise<readonly LayerEntry[]> {
    return this.#ask(path, (i) => i.readdir(path));
  }

  async readFile(path: string, offset: number, length: number): Promise<Buffer> {
    return this.#ask(path, (i) => i.readFile(path, offset, length));
  }

  async hasXattrs(): Promise<boolean> {
    return (await this.start()).hasXattrs;
  }

  /** Answers from the index once it holds what it says of `path`; falls back when it does not. */
  async #ask<T>(path: string, answer: (index: LayerIndex) => T | Promise<T>): Promise<T> {
    for (;;) {
      const index = await this.start();
      try {
        await index.check?.(path);
        return await answer(index);
      } catch (err) {
        // from an index made elsewhere, bytes that fail their digest mean the index lied too
        const lied = err instanceof IndexMismatchError || (err instanceof LayerVerificationError && index.check !== undefined);
        if (!lied || !this.fallback) throw err;
        this.#distrust(index, err);
      }
    }
  }

  /** Answers from `index` from now on (one checked against the whole blob, or rebuilt from it). */
  replace(index: LayerIndex): void {
    this.#index = index;
    this.#attempt = Promise.resolve(index);
  }

  #distrust(index: LayerIndex, err: LayerVerificationError): void {
    if (this.#index !== index || !this.fallback) return; // another question got here first
    log.warn("layer index from elsewhere does not match the layer's tar; dropped, the layer is read without it", {
      layer: this.digest, error: errorMessage(err),
    });
    this.#index = undefined;
    this.#attempt = undefined;
    this.#build = this.fallback;
  }
}
