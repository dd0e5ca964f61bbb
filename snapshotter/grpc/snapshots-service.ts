// containerd.services.snapshots.v1.Snapshots on top of a Snapshotter: only
// translation (contrib/snapshotservice/service.go). Every failure goes through
// toGrpcError so containerd sees the errdefs code it expects.
import type * as grpc from "@grpc/grpc-js";
import type { Scope, Snapshotter } from "../snapshots/snapshotter.js";
import { toGrpcError } from "../errdefs/grpc.js";
import { fromInfo, fromMounts, toInfo } from "./convert.js";
import type { PbCommitRequest, PbKeyRequest, PbListRequest, PbSnapshotRequest, PbUpdateRequest } from "./messages.js";

/** containerd sends the namespace of every client call in this metadata key. */
export const NAMESPACE_METADATA_KEY = "containerd-namespace";

/** containerd's snapshot service streams List results in batches of this size. */
const LIST_BATCH = 100;

export type CallObserver = (method: string, code: grpc.status | 0) => void;

function scopeOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): Scope {
  const ns = call.metadata.get(NAMESPACE_METADATA_KEY)[0];
  return { namespace: typeof ns === "string" && ns !== "" ? ns : undefined };
}

export function snapshotsService(sn: Snapshotter, observe: CallObserver = () => {}): grpc.UntypedServiceImplementation {
  const unary =
    <Req, Res>(method: string, fn: (req: Req, scope: Scope) => Promise<Res>) =>
    (call: grpc.ServerUnaryCall<Req, Res>, callback: grpc.sendUnaryData<Res>): void => {
      fn(call.request, scopeOf(call)).then(
        (res) => {
          observe(method, 0);
          callback(null, res);
        },
        (err: unknown) => {
          const e = toGrpcError(err);
          observe(method, e.code ?? 2);
          callback(e);
        },
      );
    };

  return {
    Prepare: unary("Prepare", async (r: PbSnapshotRequest, s) => ({ mounts: fromMounts(await sn.prepare(s, r.key, r.parent, r.labels)) })),
    View: unary("View", async (r: PbSnapshotRequest, s) => ({ mounts: fromMounts(await sn.view(s, r.key, r.parent, r.labels)) })),
    Mounts: unary("Mounts", async (r: PbKeyRequest, s) => ({ mounts: fromMounts(await sn.mounts(s, r.key)) })),
    Commit: unary("Commit", async (r: PbCommitRequest, s) => {
      await sn.commit(s, r.name, r.key, r.labels);
      return {};
    }),
    Remove: unary("Remove", async (r: PbKeyRequest, s) => {
      await sn.remove(s, r.key);
      return {};
    }),
    Stat: unary("Stat", async (r: PbKeyRequest, s) => ({ info: fromInfo(await sn.stat(s, r.key)) })),
    Update: unary("Update", async (r: PbUpdateRequest, s) => ({
      info: fromInfo(await sn.update(s, toInfo(r.info), r.update_mask?.paths ?? [])),
    })),
    Usage: unary("Usage", async (r: PbKeyRequest, s) => sn.usage(s, r.key)),
    Cleanup: unary("Cleanup", async (_r: unknown, s) => {
      await sn.cleanup(s);
      return {};
    }),
    List: (call: grpc.ServerWritableStream<PbListRequest, unknown>): void => {
      sn.walk(scopeOf(call), call.request.filters).then(
        (infos) => {
          for (let i = 0; i < infos.length; i += LIST_BATCH) {
            call.write({ info: infos.slice(i, i + LIST_BATCH).map(fromInfo) });
          }
          observe("List", 0);
          call.end();
        },
        (err: unknown) => {
          const e = toGrpcError(err);
          observe("List", e.code ?? 2);
          call.emit("error", e);
        },
      );
    },
  };
}
