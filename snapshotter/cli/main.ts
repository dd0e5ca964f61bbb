#!/usr/bin/env node
// augur's command line. `augur serve` runs the snapshotter; the other commands
// talk to a running one or to containerd.
import { parseArgs } from "node:util";
import { loadConfig } from "../config/config.js";
import { Daemon } from "../daemon.js";
import { errorMessage } from "../errdefs/errors.js";
import { PULL_USAGE, pullCommand } from "../pull/pull-command.js";
import { TRACE_USAGE, traceCommand } from "../trace/trace-command.js";
import { PREDICT_USAGE, predictCommand } from "../predict/predict-command.js";
import { MANIFEST_USAGE, manifestCommand } from "../manifest/manifest-command.js";
import { augurVersion } from "../util/version.js";
import { READY_USAGE, readyCommand } from "./ready-command.js";
import { CACHE_USAGE, cacheCommand } from "../cache/cache-command.js";

const USAGE = `augur: a lazy-pulling containerd snapshotter that learns what containers read

Usage:
  augur serve [--root DIR] [--socket PATH] [--config FILE] [--api ADDR]
      Serve containerd's snapshots API on a unix socket (proxy_plugins).
      --root DIR      state directory (default /var/lib/augur)
      --socket PATH   gRPC socket for containerd (default /run/augur/augur.sock)
      --config FILE   TOML file with root, socket, api
      --api ADDR      HTTP API: host:port for TCP, or a socket path (default <root>/api.sock)
      --hosts-dir DIR registry hosts, containerd style: DIR/<host>/hosts.toml
                      (default /etc/containerd/certs.d)
      --cache-dir DIR node-local layer cache, shareable (default <root>/cache)
      --cache-size N  bytes the cache may hold, e.g. 20GiB (default 20GiB)
      --serve-cache ADDR  serve the cache read-only to peers over the OCI blob
                      API on host:port (GET/HEAD /v2/<name>/blobs/<digest>)
      --peer URL      another node's cache (its --serve-cache), asked before the
                      registry on a miss (repeatable)
      --docker-config FILE  registry credentials (default ~/.docker/config.json)
      --no-lazy       never serve layers lazily; containerd unpacks every layer
      --no-native-copy  keep serving completely cached layers through FUSE
                      (default: unpack them and give new containers that copy)
      --native-copy-size N  bytes all native copies may take together (default: --cache-size);
                      a layer unpacking to over 50 times its blob is never copied
      --containerd-address PATH  containerd's socket, asked what each container
                      runs (default /run/containerd/containerd.sock)
      --trace-size N  bytes the access traces may take (default 256MiB)
      --no-trace      do not record access traces
      --predictor NAME  what prefetches follow: replay, frequency, markov,
                      locality or gru (default replay; docs/prediction.md)
      --prefetch-budget N  bytes one prefetch (a pull, a container start)
                      may fetch (default 1GiB)
      --prefetch-granularity N  predicted files queued together per layer
                      (default 16)
      --no-prefetch   fetch only what reads ask for (and read-ahead)
      --no-index-refine  leave gzip layer indexes as first built (default: when
                      a container ends, add access points where it began reading)
      --cluster-manifest REF  a cluster manifest in a registry (augur manifest
                      push --cluster), read at start and every 5 minutes
      --trust-artifact DIGEST  a profile artifact whose layer indexes need no
                      entry checks (repeatable)
${PULL_USAGE}${TRACE_USAGE}${PREDICT_USAGE}${MANIFEST_USAGE}${CACHE_USAGE}${READY_USAGE}  augur version
  augur help
`;

async function serve(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      root: { type: "string" },
      socket: { type: "string" },
      config: { type: "string" },
      api: { type: "string" },
      "hosts-dir": { type: "string" },
      "cache-dir": { type: "string" },
      "cache-size": { type: "string" },
      "serve-cache": { type: "string" },
      peer: { type: "string", multiple: true },
      "docker-config": { type: "string" },
      "no-lazy": { type: "boolean" },
      "no-native-copy": { type: "boolean" },
      "native-copy-size": { type: "string" },
      "containerd-address": { type: "string" },
      "trace-size": { type: "string" },
      "no-trace": { type: "boolean" },
      predictor: { type: "string" },
      "prefetch-budget": { type: "string" },
      "prefetch-granularity": { type: "string" },
      "no-prefetch": { type: "boolean" },
      "no-index-refine": { type: "boolean" },
      "cluster-manifest": { type: "string" },
      "trust-artifact": { type: "string", multiple: true },
    },
    strict: true,
  });
  const config = loadConfig(
    {
      root: values.root, socket: values.socket, api: values.api, hostsDir: values["hosts-dir"], cacheDir: values["cache-dir"],
      cacheSize: values["cache-size"], dockerConfig: values["docker-config"], lazy: values["no-lazy"] ? false : undefined,
      nativeCopy: values["no-native-copy"] ? false : undefined, nativeCopySize: values["native-copy-size"],
      containerdAddress: values["containerd-address"], traceSize: values["trace-size"], trace: values["no-trace"] ? false : undefined,
      predictor: values.predictor, prefetchBudget: values["prefetch-budget"], prefetchGranularity: values["prefetch-granularity"],
      prefetch: values["no-prefetch"] ? false : undefined,
      refineIndexes: values["no-index-refine"] ? false : undefined,
      clusterManifest: values["cluster-manifest"], trustedArtifacts: values["trust-artifact"],
      serveCache: values["serve-cache"], peers: values.peer,
    },
    values.config,
  );
  // Handlers go in before the sockets exist: a SIGTERM that lands while augur
  // is starting must still stop it cleanly (once started), not kill it.
  const starting = Daemon.start(config);
  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    process.stderr.write(`augur: ${signal} received, shutting down\n`);
    starting.then((daemon) => daemon.stop()).then(
      () => process.exit(0),
      (err: unknown) => {
        process.stderr.write(`augur: shutdown failed: ${errorMessage(err)}\n`);
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  await starting;
}

async function main(argv: string[]): Promise<void> {
  // FUSE handlers and cache reads share libuv's thread pool; 4 threads are too
  // few when containers keep several blocking reads in flight.
  process.env.UV_THREADPOOL_SIZE ??= "16";
  const [command, ...rest] = argv;
  switch (command) {
    case "serve":
      return serve(rest);
    case "pull":
      await pullCommand(rest);
      return;
    case "trace":
      return traceCommand(rest);
    case "predict":
      return predictCommand(rest);
    case "manifest":
      return manifestCommand(rest);
    case "ready":
      return readyCommand(rest);
    case "cache":
      return cacheCommand(rest);
    case "version":
    case "--version":
      process.stdout.write(`augur ${augurVersion()}\n`);
      return;
    case undefined:
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return;
    default:
      throw new Error(`unknown command ${JSON.stringify(command)}; run 'augur help'`);
  }
}

main(process.argv.slice(2)).catch((err: unknown) => {
  process.stderr.write(`augur: ${errorMessage(err)}\n`);
  process.exit(1);
});
