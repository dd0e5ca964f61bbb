// A small client of Kubernetes' CRI API (the subset in proto/k8s.io/cri-api),
// talking to containerd's CRI plugin on containerd's socket as the kubelet does.
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { LOADER_OPTIONS, protoDir } from "../../snapshotter/grpc/proto.js";

export interface CriImage {
  id: string;
  repo_tags: string[];
  repo_digests: string[];
  size: number;
}

export interface Cri {
  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }>;
  /** ImageService.PullImage; resolves with the image_ref CRI reports. */
  pullImage(image: string): Promise<string>;
  imageStatus(image: string): Promise<CriImage | null>;
  removeImage(image: string): Promise<void>;
  close(): void;
}

type Call = (req: object, cb: (err: grpc.ServiceError | null, res: Record<string, unknown>) => void) => void;

export function criClient(containerdAddress: string): Cri {
  const pkg = grpc.loadPackageDefinition(
    protoLoader.loadSync("k8s.io/cri-api/pkg/apis/runtime/v1/api.proto", { ...LOADER_OPTIONS, includeDirs: [protoDir()] }),
  ) as unknown as { runtime: { v1: Record<string, grpc.ServiceClientConstructor> } };
  const target = `unix:${containerdAddress}`;
  const creds = grpc.credentials.createInsecure();
  const runtime = new (pkg.runtime.v1.RuntimeService as grpc.ServiceClientConstructor)(target, creds);
  const images = new (pkg.runtime.v1.ImageService as grpc.ServiceClientConstructor)(target, creds);
  const call = (client: grpc.Client, method: string, req: object): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const fn = (client as unknown as Record<string, Call>)[method];
      if (!fn) throw new Error(`no CRI method ${method}`);
      fn.call(client, req, (err, res) => (err ? reject(err) : resolve(res)));
    });
  return {
    version: async () => (await call(runtime, "Version", { version: "v1" })) as unknown as Awaited<ReturnType<Cri["version"]>>,
    pullImage: async (image) => (await call(images, "PullImage", { image: { image } })).image_ref as string,
    imageStatus: async (image) => ((await call(images, "ImageStatus", { image: { image } })).image as CriImage | null) ?? null,
    removeImage: async (image) => void (await call(images, "RemoveImage", { image: { image } })),
    close: () => {
      runtime.close();
      images.close();
    },
  };
}
