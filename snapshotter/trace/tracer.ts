// Records what each container asks of augur's FUSE layers. Every request the
// FUSE layer reports comes with its caller's pid; attribution.ts turns that
// into the container (its active snapshot), and the request goes into that
// container run's trace, which is created at its first request and ended when
// its snapshot is removed. Requests from processes that are not in one of
// augur's containers (containerd reading an image's config, a person with
// `ls`) are counted, not traced.
//
// What a trace cannot see: the kernel answers repeated lookups (entry
// timeouts) and reads of cached pages itself, so a second container on a warm
// node shows its opens but few reads (history.ts keeps read footprints per
// file for that reason); layers served from a native copy (no FUSE) are not
// traced at all.
import type { LayerAccess } from "../fuse/layer-operations.js";
import { errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import type { RootUpperOf } from "./attribution.js";
import type { AccessRecord } from "./trace-format.js";
import type { TraceStore, TraceWriter } from "./trace-store.js";
import type { ContainerRef, WorkloadSource } from "./workload-source.js";

const log = logger("trace");
const NOT_OURS_TTL_MS = 5_000;

export interface TracerOptions {
  store: TraceStore;
  rootUpperOf: RootUpperOf;
  /** The container whose root filesystem's upperdir this is, if it is one of augur's active snapshots. */
  containerOf(upperdir: string): ContainerRef | undefined;
  workloads: WorkloadSource;
}

/** An access attributed to a container run, as subscribers (the prefetcher) get it. */
export interface TracedAccess {
  container: ContainerRef;
  trace: string;
  record: AccessRecord;
}

export interface TracerStats {
  traced: number;
  unattributed: number;
  activeTraces: number;
}

export class Tracer {
  readonly #opts: TracerOptions;
  /** Upper directory -> container; "not ours" is kept only briefly (a snapshot may be committed to the store a moment later, as at start-up). */
  readonly #byUpper = new Map<string, { c: ContainerRef | undefined; at: number }>();
  readonly #writers = new Map<number, TraceWriter>();
  readonly #listeners: ((a: TracedAccess) => void)[] = [];
  #traced = 0;
  #unattributed = 0;

  constructor(opts: TracerOptions) {
    this.#opts = opts;
  }

  /** Hears every traced access (after it is recorded). */
  subscribe(listener: (a: TracedAccess) => void): void {
    this.#listeners.push(listener);
  }

  /** One FUSE request of layer `layer`. Runs on the FUSE path: Map lookups, almost always. */
  observe(layer: string, a: LayerAccess): void {
    const container = a.pid === undefined ? undefined : this.#containerOfPid(a.pid);
    if (!container) {
      this.#unattributed++;
      return;
    }
    const w = this.#writerFor(container);
    const t = Math.max(0, Math.round((performance.timeOrigin + a.at - w.header.started) * 1000) / 1000);
    const record: AccessRecord = {
      kind: "access", t, op: a.op, layer, path: a.path,
      ...(a.offset !== undefined ? { offset: a.offset } : {}),
      ...(a.length !== undefined ? { length: a.length } : {}),
      ...(a.size !== undefined ? { size: a.size } : {}),
      ...(a.pid !== undefined ? { pid: a.pid } : {}),
    };
    if (!w.append(record)) return;
    this.#traced++;
    for (const l of this.#listeners) {
      try {
        l({ container, trace: w.id, record });
      } catch (err) {
        log.warn("trace listener failed", { error: errorMessage(err) });
      }
    }
  }

  /** The container's snapshot was removed: its run is over. */
  containerRemoved(namespace: string, container: string, snapshot: number): void {
    for (const [upper, e] of this.#byUpper) if (e.c?.snapshot === snapshot) this.#byUpper.delete(upper);
    this.#opts.workloads.forget({ namespace, container, snapshot });
    const w = this.#writers.get(snapshot);
    this.#writers.delete(snapshot);
    if (w) w.end("removed");
    else this.#opts.store.endRun(namespace, container, snapshot, "removed"); // traced before a restart
  }

  /**
   * containerd deleted a container (its events say so at once; the
   * snapshot's removal may wait for containerd's garbage collection): its
   * runs are over. Returns the snapshot ids of the runs that ended.
   */
  containerDeleted(namespace: string, container: string): number[] {
    const ended: number[] = [];
    for (const [snapshot, w] of this.#writers) {
      if (w.header.namespace !== namespace || w.header.container !== container) continue;
      this.#writers.delete(snapshot);
      w.end("removed");
      ended.push(snapshot);
    }
    this.#opts.store.endContainer(namespace, container, "removed"); // traced before a restart
    return ended;
  }

  stats(): TracerStats {
    return { traced: this.#traced, unattributed: this.#unattributed, activeTraces: this.#writers.size };
  }

  /** Writes what is buffered; traces of containers still running stay open, to be continued after a restart. */
  close(): void {
    for (const w of this.#writers.values()) w.flushNow();
    this.#writers.clear();
  }

  #containerOfPid(pid: number): ContainerRef | undefined {
    const upper = this.#opts.rootUpperOf(pid);
    if (!upper) return undefined;
    const hit = this.#byUpper.get(upper);
    const now = Date.now();
    if (hit && (hit.c || now - hit.at < NOT_OURS_TTL_MS)) return hit.c;
    const c = this.#opts.containerOf(upper);
    if (this.#byUpper.size >= 4096) this.#byUpper.clear(); // other augurs' containers, mostly
    this.#byUpper.set(upper, { c, at: now });
    return c;
  }

  #writerFor(c: ContainerRef): TraceWriter {
    let w = this.#writers.get(c.snapshot);
    if (w) return w;
    const store = this.#opts.store;
    const reopened = store.reopen(c.namespace, c.container, c.snapshot);
    w = reopened ?? store.create({ namespace: c.namespace, container: c.container, snapshot: c.snapshot, started: Date.now(), layers: c.layers });
    this.#writers.set(c.snapshot, w);
    if (!reopened) {
      const writer = w;
      void this.#opts.workloads.workloadOf(c).then((workload) => writer.append({ kind: "workload", t: writer.now(), workload }));
    }
    log.debug(reopened ? "continuing trace" : "tracing container", { trace: w.id, namespace: c.namespace, container: c.container });
    return w;
  }
}
