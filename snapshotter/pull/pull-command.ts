// `augur pull [flags] IMAGE`: flags, defaults (ctr's environment variables
// included), and the progress mode; the work is Puller's.
import { parseArgs } from "node:util";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { parseReference } from "../registry/reference.js";
import { RegistryClient } from "../registry/registry-client.js";
import { ContainerdClient, DEFAULT_ADDRESS, DEFAULT_NAMESPACE } from "../containerd/containerd-client.js";
import { PullProgress, type ProgressMode } from "./progress.js";
import { Puller, type PullResult } from "./puller.js";

export const PULL_USAGE = `  augur pull [--plain-http] [-q|--quiet] [--namespace NS] [--address SOCK]
             [--snapshotter NAME] [--platform P] IMAGE
      Pull IMAGE into containerd, lazily where the snapshotter can (like
      'ctr-remote images rpull'); layers it cannot serve lazily are downloaded
      and unpacked by containerd's diff service.
      --plain-http    talk plain HTTP to every registry host
      -q, --quiet     print nothing but errors
      --namespace NS  containerd namespace (default $CONTAINERD_NAMESPACE or default)
      --address SOCK  containerd's socket (default $CONTAINERD_ADDRESS or
                      /run/containerd/containerd.sock)
      --snapshotter NAME  snapshotter to unpack with (default augur)
      --platform P    os/arch[/variant] to pick from an image index (default this machine's)
      --hosts-dir DIR registry hosts, containerd style (default /etc/containerd/certs.d)
      --docker-config FILE  registry credentials (default ~/.docker/config.json)
`;

/** This machine's platform in OCI terms (containerd's platforms.DefaultSpec). */
export function defaultPlatform(arch: string = process.arch): string {
  const map: Record<string, string> = { x64: "amd64", arm64: "arm64", arm: "arm/v7", ia32: "386", ppc64: "ppc64le", s390x: "s390x", riscv64: "riscv64" };
  return `linux/${map[arch] ?? arch}`;
}

function progressMode(quiet: boolean): ProgressMode {
  if (quiet) return "quiet";
  return process.stdout.isTTY ? "tty" : "plain";
}

export async function pullCommand(argv: string[]): Promise<PullResult> {
  const { values, positionals } = parseArgs({
    args: argv,
    options: {
      "plain-http": { type: "boolean" },
      quiet: { type: "boolean", short: "q" },
      namespace: { type: "string", short: "n" },
      address: { type: "string", short: "a" },
      snapshotter: { type: "string" },
      platform: { type: "string" },
      "hosts-dir": { type: "string" },
      "docker-config": { type: "string" },
    },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new InvalidArgumentError(`pull needs exactly one IMAGE, got ${positionals.length}; run 'augur help'`);
  const ref = positionals[0] as string;
  const reference = parseReference(ref);
  const registry = new RegistryClient({ plainHttp: values["plain-http"] ?? false, hostsDir: values["hosts-dir"], dockerConfig: values["docker-config"] });
  const containerd = new ContainerdClient(
    values.address ?? process.env.CONTAINERD_ADDRESS ?? DEFAULT_ADDRESS,
    values.namespace ?? process.env.CONTAINERD_NAMESPACE ?? DEFAULT_NAMESPACE,
  );
  const progress = new PullProgress(progressMode(values.quiet ?? false));
  try {
    const puller = new Puller(
      { platform: values.platform ?? defaultPlatform(), snapshotter: values.snapshotter ?? "augur", registry, containerd, progress },
      reference,
    );
    return await puller.pull();
  } catch (err) {
    progress.finish();
    throw new Error(`pull ${ref}: ${errorMessage(err)}`, { cause: err });
  } finally {
    containerd.close();
    await registry.close();
  }
}
