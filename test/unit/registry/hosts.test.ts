import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it, expect } from "vitest";
import { isInvalidArgument } from "../../../snapshotter/errdefs/errors.js";
import { isLocalhost, loadHosts, type RegistryEndpoint } from "../../../snapshotter/registry/hosts.js";

/** The endpoint fields a user checks, capabilities as a sorted list. */
const view = (e: RegistryEndpoint) => ({ url: e.url, host: e.host, capabilities: [...e.capabilities].sort(), skipVerify: e.skipVerify });
const ALL = ["pull", "push", "resolve"];

describe("hosts.toml", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "augur-hosts-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const write = (hostDir: string, text: string): void => {
    mkdirSync(join(dir, hostDir), { recursive: true });
    writeFileSync(join(dir, hostDir, "hosts.toml"), text);
  };

  it("lists mirrors in file order, then the server", async () => {
    write(
      "docker.io",
      [
        'server = "https://registry-1.docker.io"',
        '[host."https://mirror-b.example"]',
        '  capabilities = ["pull", "resolve"]',
        '[host."http://10.0.0.5:5000"]',
        '  capabilities = ["pull"]',
        '[host."mirror-a.example:8443"]',
        '  capabilities = ["pull", "resolve"]',
        "  skip_verify = true",
        "",
      ].join("\n"),
    );
    const endpoints = (await loadHosts("docker.io", dir)).map(view);
    expect(endpoints).toEqual([
      { url: "https://mirror-b.example/v2", host: "mirror-b.example", capabilities: ["pull", "resolve"], skipVerify: false },
      { url: "http://10.0.0.5:5000/v2", host: "10.0.0.5:5000", capabilities: ["pull"], skipVerify: false },
      { url: "https://mirror-a.example:8443/v2", host: "mirror-a.example:8443", capabilities: ["pull", "resolve"], skipVerify: true },
      { url: "https://registry-1.docker.io/v2", host: "registry-1.docker.io", capabilities: ALL, skipVerify: false },
    ]);
  });

  it("honours plain_http, override_path, mirror paths and headers", async () => {
    write(
      "registry.example.com",
      [
        'server = "registry.example.com"',
        "plain_http = true",
        '[host."cache.local:5000"]',
        "  plain_http = true",
        '[host."https://proxy.example/registry"]',
        '[host."https://raw.example/custom/api"]',
        "  override_path = true",
        '  header = { "X-Tenant" = "blue", "X-Multi" = ["a", "b"] }',
        "",
      ].join("\n"),
    );
    const endpoints = await loadHosts("registry.example.com", dir);
    expect(endpoints.map((e) => e.url)).toEqual([
      "http://cache.local:5000/v2",
      "https://proxy.example/registry/v2",
      "https://raw.example/custom/api",
      "http://registry.example.com/v2",
    ]);
    expect(endpoints[2]?.headers).toEqual({ "x-tenant": "blue", "x-multi": "a, b" });
  });

  it("finds host_port_ directories and falls back to _default", async () => {
    write("127.0.0.1_5000_", '[host."http://127.0.0.1:6000"]\n');
    write("_default", 'server = "https://fallback.example"\n');
    const local = await loadHosts("127.0.0.1:5000", dir);
    expect(local.map((e) => e.url)).toEqual(["http://127.0.0.1:6000/v2", "http://127.0.0.1:5000/v2"]);
    const other = await loadHosts("quay.io", dir);
    expect(other.map((e) => e.url)).toEqual(["https://fallback.example/v2"]);
  });

  it("without a file: https for remote hosts, plain http for loopback, registry-1 for docker.io", async () => {
    expect((await loadHosts("ghcr.io", dir)).map(view)).toEqual([{ url: "https://ghcr.io/v2", host: "ghcr.io", capabilities: ALL, skipVerify: false }]);
    expect((await loadHosts("docker.io", dir)).map((e) => e.url)).toEqual(["https://registry-1.docker.io/v2"]);
    for (const h of ["localhost:5000", "127.0.0.1:5000", "[::1]:5000", "localhost"]) {
      expect((await loadHosts(h, dir)).map((e) => e.url)).toEqual([`http://${h}/v2`]);
    }
    expect((await loadHosts("ghcr.io", join(dir, "missing"))).map((e) => e.url)).toEqual(["https://ghcr.io/v2"]);
  });

  it("applies top-level settings to the default server when none is named", async () => {
    write("reg.example", 'capabilities = ["pull"]\nskip_verify = true\n');
    expect((await loadHosts("reg.example", dir)).map(view)).toEqual([{ url: "https://reg.example/v2", host: "reg.example", capabilities: ["pull"], skipVerify: true }]);
  });

  it("reads ca files, absolute or relative to the host's directory, for mirrors and the server", async () => {
    write("reg.example", '[host."https://m.example"]\n  ca = "/etc/certs/m.pem"\n[host."https://n.example"]\n  ca = ["a.pem", "sub/b.pem"]\n');
    const endpoints = await loadHosts("reg.example", dir);
    expect(endpoints.map((e) => e.url)).toEqual(["https://m.example/v2", "https://n.example/v2", "https://reg.example/v2"]);
    expect(endpoints.map((e) => e.ca)).toEqual([["/etc/certs/m.pem"], [join(dir, "reg.example", "a.pem"), join(dir, "reg.example", "sub", "b.pem")], undefined]);
    write("top.example", 'ca = "ca.pem"\n');
    expect((await loadHosts("top.example", dir))[0]?.ca).toEqual([join(dir, "top.example", "ca.pem")]);
  });

  it("reads client certificates the three ways containerd does", async () => {
    write("mtls.example", [
      '[host."https://a.example"]\n  client = "both.pem"',
      '[host."https://b.example"]\n  client = ["/etc/c1.pem", "c2.pem"]',
      '[host."https://c.example"]\n  client = [["c.cert", "c.key"], ["/etc/d.pem", ""]]',
      "",
    ].join("\n"));
    const d = join(dir, "mtls.example");
    expect((await loadHosts("mtls.example", dir)).map((e) => e.client)).toEqual([
      [{ cert: join(d, "both.pem") }],
      [{ cert: "/etc/c1.pem" }, { cert: join(d, "c2.pem") }],
      [{ cert: join(d, "c.cert"), key: join(d, "c.key") }, { cert: "/etc/d.pem" }],
      undefined,
    ]);
  });

  it.each([
    ['[host."https://m"]\nclient = [["a", "b", "c"]]\n', "each pair must be [cert, key]"],
    ["server = ", "invalid TOML"],
    ['[host."https://m"]\ncapabilities = ["pull", "fly"]\n', 'unknown capability "fly"'],
    ['[host."https://m"]\nskip_verify = "yes"\n', "skip_verify must be true or false"],
    ["server = 5\n", "server must be a string"],
  ])("rejects %j", async (text, why) => {
    write("bad.example", text);
    const err: unknown = await loadHosts("bad.example", dir).catch((e: unknown) => e);
    expect(isInvalidArgument(err)).toBe(true);
    expect((err as Error).message).toContain(why);
    expect((err as Error).message).toContain(join(dir, "bad.example", "hosts.toml"));
  });

  it("recognises loopback hosts", () => {
    expect(["localhost", "localhost:1", "127.0.0.1", "127.1.2.3:80", "[::1]", "[::1]:5000"].every(isLocalhost)).toBe(true);
    expect(["example.com", "10.0.0.1:5000", "localhost.example.com", "128.0.0.1"].some(isLocalhost)).toBe(false);
  });
});
