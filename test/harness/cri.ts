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

/** The parts of CRI's PodSandboxConfig the tests set (snake_case, as on the wire). */
export interface PodSandboxConfig {
  metadata: { name: string; uid: string; namespace: string; attempt?: number };
  hostname?: string;
  log_directory?: string;
  linux?: { security_context?: { namespace_options?: { network?: "POD" | "NODE"; pid?: "POD" | "CONTAINER" | "NODE"; ipc?: "POD" | "NODE" } } };
}

export interface ContainerConfig {
  metadata: { name: string; attempt?: number };
  image: { image: string };
  command?: string[];
  args?: string[];
  log_path?: string;
}

export interface CriContainerStatus {
  id: string;
  state: "CONTAINER_CREATED" | "CONTAINER_RUNNING" | "CONTAINER_EXITED" | "CONTAINER_UNKNOWN";
  exit_code: number;
  image_ref: string;
  reason: string;
  log_path: string;
}

export interface Cri {
  version(): Promise<{ runtime_name: string; runtime_version: string; runtime_api_version: string }>;
  /** ImageService.PullImage; resolves with the image_ref CRI reports. */
  pullImage(image: string): Promise<string>;
  imageStatus(image: string): Promise<CriImage | null>;
  removeImage(image: string): Promise<void>;
  /** RuntimeService.RunPodSandbox; resolves with the sandbox id. */
  runPodSandbox(config: PodSandboxConfig): Promise<string>;
  stopPodSandbox(id: string): Promise<void>;
  removePodSandbox(id: string): Promise<void>;
  /** RuntimeService.CreateContainer in sandbox `sandboxId`; resolves with the container id. */
  createContainer(sandboxId: string, config: ContainerConfig, sandboxConfig: PodSandboxConfig): Promise<string>;
  startContainer(id: string): Promise<void>;
  containerStatus(id: string): Promise<CriContainerStatus>;
  removeContainer(id: string): Promise<void>;
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
    runPodSandbox: async (config) => (await call(runtime, "RunPodSandbox", { config })).pod_sandbox_id as string,
    stopPodSandbox: async (id) => void (await call(runtime, "StopPodSandbox", { pod_sandbox_id: id })),
    removePodSandbox: async (id) => void (await call(runtime, "RemovePodSandbox", { pod_sandbox_id: id })),
    createContainer: async (sandboxId, config, sandboxConfig) =>
      (await call(runtime, "CreateContainer", { pod_sandbox_id: sandboxId, config, sandbox_config: sandboxConfig })).container_id as string,
    startContainer: async (id) => void (await call(runtime, "StartContainer", { container_id: id })),
    containerStatus: async (id) => (await call(runtime, "ContainerStatus", { container_id: id })).status as CriContainerStatus,
    removeContainer: async (id) => void (await call(runtime, "RemoveContainer", { container_id: id })),
    close: () => {
      runtime.close();
      images.close();
    },
  };
}
