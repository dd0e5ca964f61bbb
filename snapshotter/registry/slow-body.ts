// A registry that trickles a body (a few bytes a second, never stopping)
// would hold a read for as long as the body lasts: undici's bodyTimeout only
// fires when nothing arrives at all for 30 s. This undici interceptor gives a
// response up when, in a whole window of `windowMs` during which augur
// was reading it (not pausing it for backpressure), fewer than `minBytes`
// arrived, so a read fails in seconds with an error naming the host.
import type { Dispatcher } from "undici";
import { UnavailableError } from "../errdefs/errors.js";

export interface BodyRate {
  /** Bytes that must arrive in every window while the body is read. */
  minBytes: number;
  windowMs: number;
}

/** 64 KiB in every 5 s: ~13 KB/s, far below any registry that is working. */
export const DEFAULT_BODY_RATE: BodyRate = { minBytes: 64 << 10, windowMs: 5_000 };

export class SlowBodyError extends UnavailableError {}

type Controller = Dispatcher.DispatchController;
type Handler = Dispatcher.DispatchHandler;

/** The controller the inner handler sees: pauses (backpressure) are noted, so a paused window is not held against the server. */
class WatchedController implements Controller {
  pausedInWindow = false;
  constructor(readonly outer: Controller) {}
  get aborted(): boolean {
    return this.outer.aborted;
  }
  get paused(): boolean {
    return this.outer.paused;
  }
  get reason(): Error | null {
    return this.outer.reason;
  }
  get rawHeaders(): Controller["rawHeaders"] {
    return this.outer.rawHeaders;
  }
  get rawTrailers(): Controller["rawTrailers"] {
    return this.outer.rawTrailers;
  }
  abort(reason: Error): void {
    this.outer.abort(reason);
  }
  pause(): void {
    this.pausedInWindow = true;
    this.outer.pause();
  }
  resume(): void {
    this.outer.resume();
  }
}

class RateGuard implements Handler {
  #controller: WatchedController | undefined;
  #timer: NodeJS.Timeout | undefined;
  #got = 0;

  constructor(
    readonly inner: Handler,
    readonly rate: BodyRate,
    readonly target: string,
  ) {}

  #watched(c: Controller): WatchedController {
    if (this.#controller?.outer !== c) this.#controller = new WatchedController(c);
    return this.#controller;
  }

  onRequestStart(c: Controller, context: unknown): void {
    this.inner.onRequestStart?.(this.#watched(c), context);
  }

  onRequestUpgrade(c: Controller, ...rest: [number, Parameters<NonNullable<Handler["onRequestUpgrade"]>>[2], Parameters<NonNullable<Handler["onRequestUpgrade"]>>[3]]): void {
    this.inner.onRequestUpgrade?.(this.#watched(c), ...rest);
  }

  onResponseStart(c: Controller, statusCode: number, headers: Parameters<NonNullable<Handler["onResponseStart"]>>[2], statusMessage?: string): void {
    const watched = this.#watched(c);
    this.#stop();
    let seen = this.#got;
    watched.pausedInWindow = c.paused;
    this.#timer = setInterval(() => {
      const got = this.#got - seen;
      seen = this.#got;
      const paused = watched.pausedInWindow || c.paused;
      watched.pausedInWindow = c.paused;
      if (c.aborted) return this.#stop();
      if (!paused && got < this.rate.minBytes) {
        this.#stop();
        c.abort(new SlowBodyError(`${this.target} sent ${got} bytes in ${this.rate.windowMs / 1000} s, under the ${this.rate.minBytes} bytes a working registry sends; given up`));
      }
    }, this.rate.windowMs);
    this.#timer.unref();
    this.inner.onResponseStart?.(watched, statusCode, headers, statusMessage);
  }

  onResponseData(c: Controller, chunk: Buffer): void {
    this.#got += chunk.length;
    this.inner.onResponseData?.(this.#watched(c), chunk);
  }

  onResponseEnd(c: Controller, trailers: Parameters<NonNullable<Handler["onResponseEnd"]>>[1]): void {
    this.#stop();
    this.inner.onResponseEnd?.(this.#watched(c), trailers);
  }

  onResponseError(c: Controller, error: Error): void {
    this.#stop();
    this.inner.onResponseError?.(this.#watched(c), error);
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/** The interceptor: every response's body is held to `rate`. */
export function slowBodyGuard(rate: BodyRate): Dispatcher.DispatcherComposeInterceptor {
  return (dispatch) => (opts, handler) => dispatch(opts, new RateGuard(handler, rate, `${String(opts.origin ?? "")}${opts.path}`));
}
