import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { CONFIG_FILE_KEYS, DEFAULT_ROOT, DEFAULT_SOCKET, loadConfig } from "../../../snapshotter/config/config.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const file = (text: string): string => {
  const dir = mkdtempSync(join(tmpdir(), "augur-cfg-"));
  dirs.push(dir);
  const p = join(dir, "augur.toml");
  writeFileSync(p, text);
  return p;
};

describe("loadConfig", () => {
  it("defaults keep everything under the root", () => {
    expect(loadConfig({})).toEqual({
      root: DEFAULT_ROOT, socket: DEFAULT_SOCKET, api: `${DEFAULT_ROOT}/api.sock`, lazy: true, nativeCopy: true, nativeCopySize: 20 * 1024 ** 3,
      hostsDir: "/etc/containerd/certs.d", cacheDir: `${DEFAULT_ROOT}/cache`, cacheSize: 20 * 1024 ** 3, dockerConfig: undefined,
      trace: true, traceSize: 256 * 1024 ** 2, containerdAddress: "/run/containerd/containerd.sock",
      prefetch: true, predictor: "replay", prefetchBudget: 1024 ** 3, prefetchGranularity: 16,
      clusterManifest: undefined, trustedArtifacts: [], refineIndexes: true, serveCache: undefined, peers: [],
    });
    expect(loadConfig({ root: "/x" }).api).toBe("/x/api.sock");
  });
  it("the installed config.toml shows every setting with its true default", () => {
    const shipped = readFileSync(new URL("../../../scripts/host/config.toml", import.meta.url), "utf8");
    const shown = [...shipped.matchAll(/^# ([a-z_]+) = /gm)].map((m) => m[1]);
    expect([...shown].sort()).toEqual([...CONFIG_FILE_KEYS].sort());
    // uncommented, it changes nothing (the settings without a default only show their form)
    const noDefault = new Set(["docker_config", "cluster_manifest", "trusted_artifacts", "serve_cache"]);
    const uncommented = shipped.replace(/^# ([a-z_]+) = (.*)$/gm, (line, key: string, value: string) => (noDefault.has(key) ? line : `${key} = ${value}`));
    expect(uncommented).not.toBe(shipped);
    expect(loadConfig({}, file(uncommented))).toEqual(loadConfig({}));
  });
  it("flags override the file, the file overrides defaults", () => {
    const f = file('root = "/from-file"\napi = "127.0.0.1:9000"\n');
    expect(loadConfig({}, f)).toMatchObject({ root: "/from-file", socket: DEFAULT_SOCKET, api: "127.0.0.1:9000", cacheDir: "/from-file/cache" });
    expect(loadConfig({ root: "/flag", api: "/a.sock" }, f)).toMatchObject({ root: "/flag", socket: DEFAULT_SOCKET, api: "/a.sock" });
  });
  it("reads lazy-pulling settings, sizes with units", () => {
    const f = file('lazy = false\nhosts_dir = "/h"\ncache_dir = "/c"\ncache_size = "512MiB"\ndocker_config = "/d.json"\n');
    expect(loadConfig({}, f)).toMatchObject({ lazy: false, hostsDir: "/h", cacheDir: "/c", cacheSize: 512 * 1024 ** 2, dockerConfig: "/d.json" });
    expect(loadConfig({ cacheSize: "2G", lazy: true }, f)).toMatchObject({ lazy: true, cacheSize: 2 * 1024 ** 3 });
    expect(loadConfig({ cacheSize: 4096 })).toMatchObject({ cacheSize: 4096, nativeCopySize: 4096 });
    expect(loadConfig({ nativeCopySize: "1GiB" }, f)).toMatchObject({ cacheSize: 512 * 1024 ** 2, nativeCopySize: 1024 ** 3 });
    expect(loadConfig({}, file('native_copy_size = "3MiB"\n'))).toMatchObject({ nativeCopySize: 3 * 1024 ** 2 });
    expect(() => loadConfig({ nativeCopySize: "huge" })).toThrow(/native copy size "huge" is not a size/);
    expect(() => loadConfig({ cacheSize: "lots" })).toThrow(/cache size "lots" is not a size/);
    expect(() => loadConfig({}, file("cache_size = -1"))).toThrow(/cache_size .* is not a size/);
    expect(() => loadConfig({}, file('lazy = "yes"'))).toThrow(/lazy must be true or false/);
  });
  it("reads tracing and prefetch settings", () => {
    const f = file('trace = false\ntrace_size = "1MiB"\ncontainerd_address = "/c.sock"\npredictor = "markov"\nprefetch_budget = "64MiB"\nprefetch_granularity = 4\n');
    expect(loadConfig({}, f)).toMatchObject({ trace: false, traceSize: 1024 ** 2, containerdAddress: "/c.sock", predictor: "markov", prefetchBudget: 64 * 1024 ** 2, prefetchGranularity: 4 });
    expect(loadConfig({ prefetchGranularity: "8", prefetch: false }, f)).toMatchObject({ prefetchGranularity: 8, prefetch: false });
    expect(() => loadConfig({}, file("prefetch_granularity = 0"))).toThrow(/prefetch_granularity 0 is not a whole number of at least 1/);
    expect(() => loadConfig({ prefetchGranularity: "two" })).toThrow(/prefetch granularity "two" is not a whole number/);
    expect(() => loadConfig({}, file('trace_size = "huge"'))).toThrow(/trace_size "huge" is not a size/);
    expect(loadConfig({}, file("refine_indexes = false"))).toMatchObject({ refineIndexes: false });
    expect(loadConfig({ refineIndexes: true }, file("refine_indexes = false"))).toMatchObject({ refineIndexes: true });
    expect(() => loadConfig({}, file("refine_indexes = 1"))).toThrow(/refine_indexes must be true or false/);
  });
  it("reads the cluster manifest and the trusted artifacts", () => {
    const d = `sha256:${"ab".repeat(32)}`;
    const f = file(`cluster_manifest = "127.0.0.1:5000/augur/cluster:prod"\ntrusted_artifacts = ["${d}"]\n`);
    expect(loadConfig({}, f)).toMatchObject({ clusterManifest: "127.0.0.1:5000/augur/cluster:prod", trustedArtifacts: [d] });
    expect(loadConfig({ trustedArtifacts: [] }, f).trustedArtifacts).toEqual([]);
    expect(() => loadConfig({ trustedArtifacts: ["sha256:xyz"] })).toThrow(/trusted artifact "sha256:xyz" is not a sha256 digest/);
    expect(() => loadConfig({}, file('trusted_artifacts = "sha256:1"'))).toThrow(/trusted_artifacts must be a list of digests/);
  });
  it("reads the peers and the address the cache is served on", () => {
    const f = file(`serve_cache = "0.0.0.0:5050"\npeers = ["10.0.0.2:5050", "http://10.0.0.3:5050/v2/"]\n`);
    expect(loadConfig({}, f)).toMatchObject({ serveCache: "0.0.0.0:5050", peers: ["http://10.0.0.2:5050", "http://10.0.0.3:5050"] });
    expect(loadConfig({ peers: ["https://peer.example"] }, f).peers).toEqual(["https://peer.example"]);
    expect(() => loadConfig({ serveCache: "somewhere" })).toThrow(/serve-cache "somewhere": expected host:port/);
    expect(() => loadConfig({ peers: ["ftp://x"] })).toThrow(/peer "ftp:\/\/x": only http and https/);
    expect(() => loadConfig({}, file('peers = "10.0.0.2:5050"'))).toThrow(/peers must be a list of URLs/);
  });
  it("names what is wrong in a bad file", () => {
    expect(() => loadConfig({}, file("root = ["))).toThrow(/cannot read config file/);
    expect(() => loadConfig({}, file('rooot = "/x"'))).toThrow(/unknown setting "rooot"/);
    expect(() => loadConfig({}, file("root = 3"))).toThrow(/root must be a non-empty string/);
    expect(() => loadConfig({}, "/nonexistent/augur.toml")).toThrow(/cannot read config file \/nonexistent/);
  });
});
