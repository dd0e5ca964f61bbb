// The workload of a container, asked of containerd (augur is a containerd
// client too): the container record's image and runtime spec (args, cwd,
// env) and the image record's target digest. The container record is created
// just after its snapshot is prepared, so a lookup that finds nothing is
// tried again for a while. Without containerd (not configured, not reachable)
// a workload is still known by its layers, so traces and predictions go on.
import { ContainerdClient } from "../containerd/containerd-client.js";
import { errorMessage, UnavailableError } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { makeWorkload, signatureEnv, type Workload } from "./workload.js";

const log = logger("trace");

/** A container's root filesystem as augur knows it. */
export interface ContainerRef {
  /** containerd namespace. */
  namespace: string;
  /** The container ID (the snapshot key ctr, nerdctl and CRI give its root filesystem). */
  container: string;
  /** augur's id of the active snapshot: a new one for every run under the same key. */
  snapshot: number;
  /** Lazily served layers below it, bottom first. */
  layers: string[];
}

/**
 * The container ID in a snapshot key as a snapshotter sees it: containerd's
 * metadata store names a snapshot `<namespace>/<n>/<key>` to the snapshotter
 * (metadata/snapshot.go), and ctr, nerdctl and CRI use the container ID as
 * the key. Other keys are returned as they are.
 */
export function containerIdOf(namespace: string, snapshotKey: string): string {
  const m = /^([^/]+)\/\d+\/(.+)$/.exec(snapshotKey);
  return m && m[1] === namespace ? (m[2] as string) : snapshotKey;
}

/**
 * How long (and how often) to look for a container record that does not
 * exist yet. containerd creates it only after the client has set the
 * container up, which can mean reading the image's /etc/group through a
 * layer that is still streaming.
 */
const LOOKUP_ATTEMPTS_MS = [0, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400, 12800];

export class WorkloadSource {
  readonly #clients = new Map<string, ContainerdClient>();
  readonly #known = new Map<string, Promise<Workload>>();
  #warned = false;

  /** `address`: containerd's socket; undefined means workloads are known by their layers only. */
  constructor(readonly address: string | undefined) {}

  /** The container's workload; never fails (falls back to one made of its layers). */
  workloadOf(c: ContainerRef): Promise<Workload> {
    const id = `${c.namespace}\0${c.container}\0${c.snapshot}`;
    let w = this.#known.get(id);
    if (!w) {
      w = this.#lookup(c);
      this.#known.set(id, w);
      if (this.#known.size > 1024) this.#known.delete(this.#known.keys().next().value as string);
      // a workload known by its layers only is asked again next time
      const asked = w;
      void asked.then((found) => {
        if (!found.args.length && !found.manifest && this.#known.get(id) === asked) this.#known.delete(id);
      });
    }
    return w;
  }

  /** Forgets a container (its snapshot is gone). */
  forget(c: Pick<ContainerRef, "namespace" | "container" | "snapshot">): void {
    this.#known.delete(`${c.namespace}\0${c.container}\0${c.snapshot}`);
  }

  /** Calls `onDeleted` whenever containerd deletes a container (events API); returns how to stop. */
  watchDeletes(onDeleted: (namespace: string, container: string) => void): () => void {
    if (!this.address) return () => undefined;
    return this.#client("default").watchContainerDeletes(onDeleted);
  }

  close(): void {
    for (const client of this.#clients.values()) client.close();
    this.#clients.clear();
  }

  async #lookup(c: ContainerRef): Promise<Workload> {
    const layersOnly = makeWorkload({ layers: c.layers, args: [], cwd: "", env: {} });
    if (!this.address) return layersOnly;
    const client = this.#client(c.namespace);
    try {
      for (const delay of LOOKUP_ATTEMPTS_MS) {
        if (delay) await new Promise((r) => setTimeout(r, delay).unref());
        let rec;
        try {
          rec = await client.container(c.container);
        } catch (err) {
          if (err instanceof UnavailableError && delay !== LOOKUP_ATTEMPTS_MS[LOOKUP_ATTEMPTS_MS.length - 1]) continue; // containerd (re)connecting
          throw err;
        }
        if (!rec) continue;
        const image = rec.image ? await client.image(rec.image) : undefined;
        return makeWorkload({
          ...(rec.image ? { image: rec.image } : {}),
          ...(image ? { manifest: image.target.digest } : {}),
          layers: c.layers,
          args: rec.process.args,
          cwd: rec.process.cwd,
          env: signatureEnv(rec.process.env),
        });
      }
      log.debug("no container record for snapshot; workload known by its layers", { namespace: c.namespace, container: c.container });
    } catch (err) {
      if (!this.#warned) {
        this.#warned = true;
        log.warn("cannot ask containerd about containers; workloads are known by their layers only", { address: this.address, error: errorMessage(err) });
      }
    }
    return layersOnly;
  }

  #client(namespace: string): ContainerdClient {
    let client = this.#clients.get(namespace);
    if (!client) {
      client = new ContainerdClient(this.address, namespace);
      this.#clients.set(namespace, client);
    }
    return client;
  }
}
