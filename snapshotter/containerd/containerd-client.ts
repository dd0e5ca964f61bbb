// A containerd API client (augur pull, workload signatures): the content, images, leases,
// snapshots and diff services over containerd's socket, the way containerd's
// Go client calls them. Every call carries `containerd-namespace` and, once a
// lease is taken, `containerd-lease`, so what the pull writes is protected from
// garbage collection until it is referenced (containerd's client.WithLease).
import * as grpc from "@grpc/grpc-js";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { serviceClient } from "../grpc/proto.js";
import type { PbInfo, PbMount } from "../grpc/messages.js";
import {
  AlreadyExistsError, FailedPreconditionError, InternalError, InvalidArgumentError, NotFoundError,
  NotImplementedError, UnavailableError,
} from "../errdefs/errors.js";

export const DEFAULT_ADDRESS = "/run/containerd/containerd.sock";
export const DEFAULT_NAMESPACE = "default";

/** containerd's descriptor as its API carries it. */
export interface PbDescriptor {
  media_type: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

/** A blob's record in containerd's content store. */
export interface ContentInfo {
  digest: string;
  size: number;
  labels: Record<string, string>;
}

/** What a container runs, from containerd's container record and its OCI runtime spec. */
export interface ContainerRecord {
  id: string;
  image: string;
  snapshotter: string;
  snapshotKey: string;
  labels: Record<string, string>;
  process: { args: string[]; cwd: string; env: string[] };
}

export interface PbImage {
  name: string;
  labels: Record<string, string>;
  target: PbDescriptor;
}

type Callback<T> = (err: grpc.ServiceError | null, res: T) => void;
type UnaryMethod = (req: object, md: grpc.Metadata, options: grpc.CallOptions, cb: Callback<unknown>) => grpc.ClientUnaryCall;
type ServiceClient = grpc.Client & Record<string, unknown>;

const SERVICES = {
  content: "containerd.services.content.v1.Content",
  images: "containerd.services.images.v1.Images",
  leases: "containerd.services.leases.v1.Leases",
  snapshots: "containerd.services.snapshots.v1.Snapshots",
  diff: "containerd.services.diff.v1.Diff",
  containers: "containerd.services.containers.v1.Containers",
  events: "containerd.services.events.v1.Events",
} as const;
type ServiceName = keyof typeof SERVICES;

/** containerd's errdefs.FromGRPC: a gRPC status back to an errdefs kind, prefixed with what was asked. */
export function fromGrpcError(err: unknown, what: string): Error {
  const e = err as Partial<grpc.ServiceError>;
  if (typeof e.code !== "number") return err instanceof Error ? err : new Error(String(err));
  const message = `${what}: ${e.details || e.message || grpc.status[e.code]}`;
  switch (e.code) {
    case grpc.status.NOT_FOUND: return new NotFoundError(message, { cause: err });
    case grpc.status.ALREADY_EXISTS: return new AlreadyExistsError(message, { cause: err });
    case grpc.status.FAILED_PRECONDITION: return new FailedPreconditionError(message, { cause: err });
    case grpc.status.INVALID_ARGUMENT: return new InvalidArgumentError(message, { cause: err });
    case grpc.status.UNAVAILABLE: return new UnavailableError(message, { cause: err });
    case grpc.status.UNIMPLEMENTED: return new NotImplementedError(message, { cause: err });
    default: return new InternalError(message, { cause: err });
  }
}

/** One write to the content store: the blob's descriptor, its bytes, the labels committed with it. */
export interface ContentWrite {
  /** Ingest reference, e.g. `layer-sha256:…` (containerd's remotes.MakeRefKey). */
  ref: string;
  digest: string;
  size: number;
  data: AsyncIterable<Buffer> | Buffer;
  labels: Record<string, string>;
  /** Called with the number of bytes sent so far. */
  onProgress?: (written: number) => void;
  /** Stops the write (and fails it) when aborted. */
  signal?: AbortSignal;
}

const WRITE_CHUNK = 1 << 20;

export class ContainerdClient {
  readonly address: string;
  readonly namespace: string;
  #lease: string | undefined;
  readonly #clients = new Map<ServiceName, ServiceClient>();

  constructor(address = DEFAULT_ADDRESS, namespace = DEFAULT_NAMESPACE) {
    this.address = address;
    this.namespace = namespace;
  }

  /** Fails with a clear message when nothing serves `address`; gRPC's own answer would be vague. */
  async connect(timeoutMs = 10_000): Promise<void> {
    if (!existsSync(this.address)) {
      throw new UnavailableError(`containerd socket ${this.address} does not exist: is containerd running? (--address)`);
    }
    const client = this.#client("content");
    await new Promise<void>((resolve, reject) =>
      client.waitForReady(Date.now() + timeoutMs, (err) =>
        err ? reject(new UnavailableError(`cannot connect to containerd at ${this.address}: ${err.message}`, { cause: err })) : resolve(),
      ),
    );
  }

  close(): void {
    for (const c of this.#clients.values()) c.close();
    this.#clients.clear();
  }

  // ---- leases ----

  /** Creates a lease that expires after `expireMs` and sends it on every later call (containerd's WithLease). */
  async createLease(expireMs = 24 * 3600_000): Promise<string> {
    const id = uniquePart();
    const labels = { "containerd.io/gc.expire": new Date(Date.now() + expireMs).toISOString().replace(/\.\d+Z$/, "Z") };
    try {
      await this.#unary("leases", "Create", { id, labels }, `create lease ${id}`);
    } catch (err) {
      // The first call of a pull: a socket that answers gRPC but not containerd's API is someone else's.
      if (err instanceof NotImplementedError) throw new UnavailableError(`${this.address} does not serve containerd's API: is it containerd's socket? (--address)`, { cause: err });
      throw err;
    }
    this.#lease = id;
    return id;
  }

  /** Deletes the lease; what the pull made is kept by the image record and its GC labels from now on. */
  async deleteLease(): Promise<void> {
    const id = this.#lease;
    if (id === undefined) return;
    this.#lease = undefined;
    await this.#unary("leases", "Delete", { id, sync: false }, `delete lease ${id}`);
  }

  // ---- content ----

  /** The blob's record, or undefined if the content store does not have it. */
  async contentInfo(digest: string): Promise<ContentInfo | undefined> {
    try {
      const res = await this.#unary<{ info: ContentInfo }>("content", "Info", { digest }, `content ${digest}`);
      return { digest: res.info.digest, size: Number(res.info.size), labels: res.info.labels };
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  /** Sets the given labels on a blob (only those: `labels.<key>` field paths, as containerd's client does). */
  async updateContentLabels(digest: string, labels: Record<string, string>): Promise<void> {
    const paths = Object.keys(labels).map((k) => `labels.${k}`);
    if (paths.length === 0) return;
    await this.#unary("content", "Update", { info: { digest, labels }, update_mask: { paths } }, `update labels of content ${digest}`);
  }

  /**
   * Writes a blob through the Write stream (STAT with ref, total and expected
   * digest; WRITEs; COMMIT with labels) and returns false if the store already
   * had it, in which case nothing was written.
   */
  async writeContent(w: ContentWrite): Promise<boolean> {
    const what = `write content ${w.digest}`;
    const call = this.#stream("content", "Write");
    let lastError: unknown;
    let committed: { digest: string } | undefined;
    const done = new Promise<void>((resolve) => {
      call.on("data", (res: { action: string; digest: string }) => {
        if (res.action === "COMMIT") committed = res;
      });
      call.on("error", (err) => {
        lastError = err;
        resolve();
      });
      call.on("end", () => resolve());
    });
    const send = async (msg: object): Promise<void> => {
      if (lastError !== undefined) return;
      if (!call.write(msg)) await Promise.race([new Promise((resolve) => call.once("drain", resolve)), done]);
    };
    try {
      await send({ action: "STAT", ref: w.ref, total: w.size, expected: w.digest });
      let offset = 0;
      for await (const chunk of chunks(w.data)) {
        if (lastError !== undefined) break;
        if (w.signal?.aborted) throw new UnavailableError(`${what}: cancelled`);
        await send({ action: "WRITE", ref: w.ref, offset, data: chunk });
        offset += chunk.length;
        w.onProgress?.(offset);
      }
      if (lastError === undefined && offset !== w.size) throw new FailedPreconditionError(`${what}: got ${offset} bytes, the descriptor says ${w.size}`);
      await send({ action: "COMMIT", ref: w.ref, total: w.size, offset, expected: w.digest, labels: w.labels });
      call.end();
    } catch (err) {
      call.cancel();
      await done;
      throw err;
    }
    await done;
    if (lastError !== undefined) {
      const err = fromGrpcError(lastError, what);
      if (err instanceof AlreadyExistsError) return false;
      throw err;
    }
    if (committed?.digest !== w.digest) throw new FailedPreconditionError(`${what}: containerd committed ${committed?.digest ?? "nothing"}`);
    return true;
  }

  // ---- images ----

  /** Creates the image record, or updates it if the name exists (containerd's createNewImage). */
  async putImage(image: PbImage): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#unary("images", "Create", { image }, `create image ${image.name}`);
        return;
      } catch (err) {
        if (!(err instanceof AlreadyExistsError)) throw err;
      }
      try {
        await this.#unary("images", "Update", { image, update_mask: null }, `update image ${image.name}`);
        return;
      } catch (err) {
        // Removed between Create and Update: create it again.
        if (!(err instanceof NotFoundError) || attempt > 2) throw err;
      }
    }
  }

  // ---- containers and images ----

  /** The container record with its process (from the runtime spec), or undefined if containerd has none. */
  async container(id: string): Promise<ContainerRecord | undefined> {
    interface PbContainer {
      id: string;
      image: string;
      snapshotter: string;
      snapshot_key: string;
      labels: Record<string, string>;
      spec: { type_url: string; value: Buffer } | null;
    }
    let res: { container: PbContainer };
    try {
      res = await this.#unary<{ container: PbContainer }>("containers", "Get", { id }, `container ${id}`);
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
    const c = res.container;
    // containerd stores the OCI runtime spec as JSON in an Any (typeurl)
    let process: { args?: unknown; cwd?: unknown; env?: unknown } = {};
    try {
      const spec = c.spec?.value?.length ? (JSON.parse(c.spec.value.toString("utf8")) as { process?: typeof process }) : {};
      process = spec.process ?? {};
    } catch {
      // a spec that is not JSON: nothing known of the process
    }
    const strings = (v: unknown): string[] => (Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : []);
    return {
      id: c.id, image: c.image, snapshotter: c.snapshotter, snapshotKey: c.snapshot_key, labels: c.labels,
      process: { args: strings(process.args), cwd: typeof process.cwd === "string" ? process.cwd : "", env: strings(process.env) },
    };
  }

  /** The image record, or undefined if containerd has none by that name. */
  async image(name: string): Promise<PbImage | undefined> {
    try {
      return (await this.#unary<{ image: PbImage }>("images", "Get", { name }, `image ${name}`)).image;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  // ---- events ----

  /**
   * Calls `onDeleted` for every container containerd deletes, in any
   * namespace, until the returned function is called. The stream is opened
   * again (after `retryMs`) when it breaks, so containerd may restart.
   */
  watchContainerDeletes(onDeleted: (namespace: string, id: string) => void, retryMs = 1000): () => void {
    let stopped = false;
    let call: grpc.ClientReadableStream<unknown> | undefined;
    const open = (): void => {
      if (stopped) return;
      const client = this.#client("events");
      const subscribe = client.Subscribe as (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<unknown>;
      // no namespace: events of every namespace (containerd's Subscribe)
      call = subscribe.call(client, { filters: ['topic=="/containers/delete"'] }, new grpc.Metadata());
      call.on("data", (e: { namespace: string; topic: string; event: { value: Buffer } | null }) => {
        const id = e.event ? containerIdOfDelete(e.event.value) : undefined;
        if (id) onDeleted(e.namespace, id);
      });
      call.on("error", () => undefined);
      call.on("close", () => {
        if (!stopped) setTimeout(open, retryMs).unref();
      });
    };
    open();
    return () => {
      stopped = true;
      call?.cancel();
    };
  }

  // ---- snapshots (through containerd, which records them and their leases) ----

  async stat(snapshotter: string, key: string): Promise<PbInfo | undefined> {
    try {
      return (await this.#unary<{ info: PbInfo }>("snapshots", "Stat", { snapshotter, key }, `stat snapshot ${key}`)).info;
    } catch (err) {
      if (err instanceof NotFoundError) return undefined;
      throw err;
    }
  }

  async prepare(snapshotter: string, key: string, parent: string, labels: Record<string, string>): Promise<PbMount[]> {
    return (await this.#unary<{ mounts: PbMount[] }>("snapshots", "Prepare", { snapshotter, key, parent, labels }, `prepare snapshot ${JSON.stringify(key)}`)).mounts;
  }

  async commit(snapshotter: string, name: string, key: string, labels: Record<string, string>): Promise<void> {
    await this.#unary("snapshots", "Commit", { snapshotter, name, key, labels }, `commit snapshot ${name}`);
  }

  async remove(snapshotter: string, key: string): Promise<void> {
    await this.#unary("snapshots", "Remove", { snapshotter, key }, `remove snapshot ${JSON.stringify(key)}`);
  }

  // ---- diff ----

  /** Applies the layer `diff` (already in the content store) onto `mounts`; answers the applied diff ID. */
  async apply(diff: PbDescriptor, mounts: PbMount[]): Promise<string> {
    const res = await this.#unary<{ applied: PbDescriptor | null }>("diff", "Apply", { diff, mounts, payloads: {} }, `apply layer ${diff.digest}`);
    if (!res.applied) throw new InternalError(`apply layer ${diff.digest}: containerd answered no descriptor`);
    return res.applied.digest;
  }

  // ---- plumbing ----

  #metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    md.set("containerd-namespace", this.namespace);
    if (this.#lease !== undefined) md.set("containerd-lease", this.#lease);
    return md;
  }

  #client(name: ServiceName): ServiceClient {
    let client = this.#clients.get(name);
    if (!client) {
      const Ctor = serviceClient(SERVICES[name]);
      client = new Ctor(`unix://${this.address}`, grpc.credentials.createInsecure(), {
        "grpc.max_receive_message_length": 16 << 20,
        "grpc.max_send_message_length": 16 << 20,
        // a local socket: after containerd (re)starts, reconnect within a second, not gRPC's default of up to two minutes
        "grpc.initial_reconnect_backoff_ms": 100,
        "grpc.max_reconnect_backoff_ms": 1000,
      });
      this.#clients.set(name, client);
    }
    return client;
  }

  #unary<T>(service: ServiceName, method: string, req: object, what: string): Promise<T> {
    const client = this.#client(service);
    const fn = client[method] as UnaryMethod;
    return new Promise<T>((resolve, reject) => {
      fn.call(client, req, this.#metadata(), {}, (err, res) => (err ? reject(fromGrpcError(err, what)) : resolve(res as T)));
    });
  }

  #stream(service: ServiceName, method: string): grpc.ClientDuplexStream<object, unknown> {
    const client = this.#client(service);
    const fn = client[method] as (md: grpc.Metadata) => grpc.ClientDuplexStream<object, unknown>;
    return fn.call(client, this.#metadata());
  }
}

/** `data` in pieces of at most WRITE_CHUNK bytes. */
async function* chunks(data: AsyncIterable<Buffer> | Buffer): AsyncGenerator<Buffer> {
  const source: AsyncIterable<Buffer> | Buffer[] = Buffer.isBuffer(data) ? [data] : data;
  for await (const piece of source) {
    for (let at = 0; at < piece.length; at += WRITE_CHUNK) yield piece.subarray(at, at + WRITE_CHUNK);
  }
}

/** containerd's uniquePart: nanoseconds and three random bytes, for lease IDs and unpack keys. */
export function uniquePart(): string {
  const nanos = Number(process.hrtime.bigint() % 1_000_000_000n);
  const random = randomBytes(3).toString("base64url");
  return `${nanos}-${random}`;
}

/** The container ID of a containerd.events.ContainerDelete message (field 1, a string). */
export function containerIdOfDelete(msg: Buffer): string | undefined {
  let at = 0;
  while (at < msg.length) {
    const key = msg[at++] as number;
    const field = key >> 3;
    const wire = key & 7;
    let len = 0;
    let shift = 0;
    for (;;) {
      const b = msg[at++];
      if (b === undefined) return undefined;
      len |= (b & 0x7f) << shift;
      shift += 7;
      if (b < 0x80) break;
    }
    if (wire === 2 && field === 1) return msg.subarray(at, at + len).toString("utf8");
    if (wire === 2) at += len;
    else if (wire !== 0) return undefined; // only strings and varints in this message
  }
  return undefined;
}
