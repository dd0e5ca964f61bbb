// Loads containerd's API definitions from proto/ with proto-loader. The field
// names stay as in the .proto files (snake_case) so messages read like
// containerd's own documentation.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's proto/ directory, found from this file in both src and dist layouts. */
export function protoDir(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, "proto");
    if (existsSync(join(candidate, "github.com"))) return candidate;
  }
  throw new Error("cannot find augur's proto/ directory");
}

const API = "github.com/containerd/containerd/api/services";

export const PROTO_FILES = {
  snapshots: `${API}/snapshots/v1/snapshots.proto`,
  content: `${API}/content/v1/content.proto`,
  images: `${API}/images/v1/images.proto`,
  leases: `${API}/leases/v1/leases.proto`,
  containers: `${API}/containers/v1/containers.proto`,
  diff: `${API}/diff/v1/diff.proto`,
  events: `${API}/events/v1/events.proto`,
};

export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
};

let cached: grpc.GrpcObject | undefined;

/** containerd's API as a grpc-js package object (services and message types). */
export function containerdApi(): grpc.GrpcObject {
  cached ??= grpc.loadPackageDefinition(
    protoLoader.loadSync(Object.values(PROTO_FILES), { ...LOADER_OPTIONS, includeDirs: [protoDir()] }),
  );
  return cached;
}

/** Looks a dotted name (e.g. `containerd.services.snapshots.v1.Snapshots`) up in the package object. */
export function serviceClient(name: string): grpc.ServiceClientConstructor {
  let node: unknown = containerdApi();
  for (const part of name.split(".")) node = (node as Record<string, unknown>)[part];
  if (typeof node !== "function" || !("service" in node)) throw new Error(`no gRPC service ${name} in proto/`);
  return node as grpc.ServiceClientConstructor;
}
