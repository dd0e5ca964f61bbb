// A containerd snapshots API client for tests, speaking to augur directly the
// way containerd's proxy plugin does (same service, same namespace metadata).
import * as grpc from "@grpc/grpc-js";
import { serviceClient } from "../../snapshotter/grpc/proto.js";
import type { PbInfo, PbMount } from "../../snapshotter/grpc/messages.js";

export type { PbInfo, PbMount };

export interface SnapshotsClient {
  prepare(key: string, parent?: string, labels?: Record<string, string>): Promise<PbMount[]>;
  view(key: string, parent?: string, labels?: Record<string, string>): Promise<PbMount[]>;
  mounts(key: string): Promise<PbMount[]>;
  commit(name: string, key: string, labels?: Record<string, string>): Promise<void>;
  remove(key: string): Promise<void>;
  stat(key: string): Promise<PbInfo>;
  update(info: Partial<PbInfo> & { name: string }, paths?: string[]): Promise<PbInfo>;
  usage(key: string): Promise<{ size: number; inodes: number }>;
  list(...filters: string[]): Promise<PbInfo[]>;
  cleanup(): Promise<void>;
  /** The raw client, for malformed requests. */
  raw: grpc.Client & Record<string, (...args: unknown[]) => unknown>;
  close(): void;
}

/** `namespace: null` sends no namespace metadata at all (as containerd's garbage collector does). */
export function snapshotsClient(socket: string, namespace: string | null = "testsuite"): SnapshotsClient {
  const Ctor = serviceClient("containerd.services.snapshots.v1.Snapshots");
  const raw = new Ctor(`unix://${socket}`, grpc.credentials.createInsecure()) as SnapshotsClient["raw"];
  const md = (): grpc.Metadata => {
    const m = new grpc.Metadata();
    if (namespace !== null) m.set("containerd-namespace", namespace);
    return m;
  };
  const call = <T>(method: string, req: object): Promise<T> =>
    new Promise((resolve, reject) => {
      const fn = raw[method] as (req: object, md: grpc.Metadata, cb: (err: grpc.ServiceError | null, res: T) => void) => void;
      fn.call(raw, req, md(), (err, res) => (err ? reject(err) : resolve(res)));
    });
  return {
    raw,
    prepare: async (key, parent = "", labels = {}) => (await call<{ mounts: PbMount[] }>("Prepare", { key, parent, labels })).mounts,
    view: async (key, parent = "", labels = {}) => (await call<{ mounts: PbMount[] }>("View", { key, parent, labels })).mounts,
    mounts: async (key) => (await call<{ mounts: PbMount[] }>("Mounts", { key })).mounts,
    commit: async (name, key, labels = {}) => void (await call("Commit", { name, key, labels })),
    remove: async (key) => void (await call("Remove", { key })),
    stat: async (key) => (await call<{ info: PbInfo }>("Stat", { key })).info,
    update: async (info, paths) => (await call<{ info: PbInfo }>("Update", { info, update_mask: paths ? { paths } : null })).info,
    usage: async (key) => {
      const u = await call<{ size: number; inodes: number }>("Usage", { key });
      return { size: Number(u.size), inodes: Number(u.inodes) };
    },
    list: (...filters) =>
      new Promise((resolve, reject) => {
        const out: PbInfo[] = [];
        const stream = (raw.List as (req: object, md: grpc.Metadata) => grpc.ClientReadableStream<{ info: PbInfo[] }>).call(raw, { filters }, md());
        stream.on("data", (batch: { info: PbInfo[] }) => out.push(...batch.info));
        stream.on("error", reject);
        stream.on("end", () => resolve(out));
      }),
    cleanup: async () => void (await call("Cleanup", {})),
    close: () => raw.close(),
  };
}
