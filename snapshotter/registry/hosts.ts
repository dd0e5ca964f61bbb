// Registry host configuration, the containerd way: `<hostsDir>/<host>/hosts.toml`
// lists mirrors (tried first, in file order) and then the upstream `server`.
// Without a file the host itself is used: HTTPS, or plain HTTP for localhost.
import { readFile } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { parse as parseToml } from "smol-toml";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { DOCKER_HUB } from "./reference.js";

const log = logger("registry");

/** Where containerd looks for `<host>/hosts.toml` by default. */
export const DEFAULT_HOSTS_DIR = "/etc/containerd/certs.d";

export type HostCapability = "pull" | "resolve" | "push";
const ALL_CAPABILITIES: readonly HostCapability[] = ["pull", "resolve", "push"];

/** One place to send registry API requests to. */
export interface RegistryEndpoint {
  /** host[:port] of the endpoint, used for credentials and token caching. */
  host: string;
  /** Base URL of the API, ending in `/v2` unless `override_path` was set: `https://mirror.example/v2`. */
  url: string;
  capabilities: ReadonlySet<HostCapability>;
  /** Accept any TLS certificate (`skip_verify = true`). */
  skipVerify: boolean;
  /** PEM files of CAs trusted for this endpoint besides the system's (`ca`), absolute paths. */
  ca?: readonly string[];
  /** Extra request headers (`[host."…".header]`). */
  headers: Record<string, string>;
  /** TLS client certificates (`client`), absolute paths: a key file, or none when the cert file holds the key too. */
  client?: readonly ClientCertificate[];
}

export interface ClientCertificate {
  cert: string;
  key?: string;
}

/** True for localhost and loopback addresses, with or without a port (containerd's IsLocalhost). */
export function isLocalhost(host: string): boolean {
  const name = host.startsWith("[") ? host.slice(1, host.indexOf("]")) : host.replace(/:\d+$/, "");
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

/** The endpoints to try for registry `host`, mirrors first, read from `hostsDir`. */
export async function loadHosts(host: string, hostsDir = DEFAULT_HOSTS_DIR): Promise<RegistryEndpoint[]> {
  for (const dir of hostDirectories(hostsDir, host)) {
    let text: string;
    try {
      text = await readFile(join(dir, "hosts.toml"), "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ENOENT" || (err as NodeJS.ErrnoException).code === "ENOTDIR") continue;
      throw err;
    }
    log.debug("loading host configuration", { host, file: join(dir, "hosts.toml") });
    return parseHostsToml(text, host, join(dir, "hosts.toml"), dir);
  }
  return [defaultEndpoint(host)];
}

/** Directories containerd consults, in order: `host_port_`, `host:port`, `_default`. */
function hostDirectories(hostsDir: string, host: string): string[] {
  const colon = host.lastIndexOf(":");
  const dirs = colon > 0 && !host.endsWith("]") ? [`${host.slice(0, colon)}_${host.slice(colon + 1)}_`] : [];
  return [...dirs, host, "_default"].map((d) => join(hostsDir, d));
}

/** The endpoint used when no hosts.toml names a server. */
export function defaultEndpoint(host: string): RegistryEndpoint {
  const capabilities = new Set(ALL_CAPABILITIES);
  if (host === DOCKER_HUB) return { host: "registry-1.docker.io", url: "https://registry-1.docker.io/v2", capabilities, skipVerify: false, headers: {} };
  const local = isLocalhost(host);
  return { host, url: `${local ? "http" : "https"}://${host}/v2`, capabilities, skipVerify: local, headers: {} };
}

/** Parses hosts.toml text for registry `host`; `file` names the source in errors, `dir` is where relative `ca` paths start. */
export function parseHostsToml(text: string, host: string, file = "hosts.toml", dir = "."): RegistryEndpoint[] {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text);
  } catch (err) {
    throw new InvalidArgumentError(`${file}: invalid TOML: ${errorMessage(err)}`, { cause: err });
  }
  const mirrors = doc.host === undefined ? {} : asTable(doc.host, `${file}: host`);
  const endpoints = Object.entries(mirrors).map(([server, table]) => parseHostTable(server, asTable(table, `${file}: host."${server}"`), `${file}: host."${server}"`, dir));
  const server = doc.server === undefined ? undefined : asString(doc.server, `${file}: server`);
  if (server !== undefined) endpoints.push(parseHostTable(server, doc, `${file}: server`, dir));
  else endpoints.push({ ...defaultEndpoint(host), ...topLevelOverrides(doc, file, dir) });
  return endpoints;
}

function topLevelOverrides(doc: Record<string, unknown>, file: string, dir: string): Partial<RegistryEndpoint> {
  const overrides: Partial<RegistryEndpoint> = {};
  if (doc.ca !== undefined) overrides.ca = parseCa(doc.ca, `${file}: ca`, dir);
  if (doc.capabilities !== undefined) overrides.capabilities = parseCapabilities(doc.capabilities, file);
  if (doc.skip_verify !== undefined) overrides.skipVerify = asBoolean(doc.skip_verify, `${file}: skip_verify`);
  if (doc.header !== undefined) overrides.headers = parseHeaders(doc.header, file);
  if (doc.client !== undefined) overrides.client = parseClient(doc.client, `${file}: client`, dir);
  return overrides;
}

function parseHostTable(server: string, table: Record<string, unknown>, where: string, dir: string): RegistryEndpoint {
  const plainHttp = table.plain_http === undefined ? false : asBoolean(table.plain_http, `${where}: plain_http`);
  const withScheme = /^https?:\/\//.test(server) ? server : `${plainHttp ? "http" : "https"}://${server}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch (err) {
    throw new InvalidArgumentError(`${where}: invalid server URL ${JSON.stringify(server)}`, { cause: err });
  }
  const overridePath = table.override_path === undefined ? false : asBoolean(table.override_path, `${where}: override_path`);
  let path = url.pathname.replace(/\/+$/, "");
  if (!overridePath && !path.endsWith("/v2")) path += "/v2";
  return {
    host: url.host,
    url: `${url.protocol}//${url.host}${path}`,
    capabilities: table.capabilities === undefined ? new Set(ALL_CAPABILITIES) : parseCapabilities(table.capabilities, where),
    skipVerify: table.skip_verify === undefined ? false : asBoolean(table.skip_verify, `${where}: skip_verify`),
    headers: table.header === undefined ? {} : parseHeaders(table.header, where),
    ...(table.ca === undefined ? {} : { ca: parseCa(table.ca, `${where}: ca`, dir) }),
    ...(table.client === undefined ? {} : { client: parseClient(table.client, `${where}: client`, dir) }),
  };
}

/**
 * `client = "both.pem"`, `client = ["a.pem", "b.pem"]` or `client = [["cert.pem", "key.pem"], ["both.pem", ""]]`,
 * as containerd reads it: a cert file alone (or with an empty key) holds its key too; paths relative to the hosts.toml.
 */
function parseClient(value: unknown, where: string, dir: string): ClientCertificate[] {
  const path = (v: unknown): string => {
    const p = asString(v, where);
    return isAbsolute(p) ? p : resolve(dir, p);
  };
  const list = Array.isArray(value) ? value : [value];
  return list.map((item) => {
    if (!Array.isArray(item)) return { cert: path(item) };
    if (item.length < 1 || item.length > 2) throw new InvalidArgumentError(`${where}: each pair must be [cert, key]`);
    const key = item[1] === undefined || item[1] === "" ? undefined : path(item[1]);
    return key ? { cert: path(item[0]), key } : { cert: path(item[0]) };
  });
}

/** `ca = "file"` or `ca = ["a", "b"]`: paths relative to the hosts.toml's directory, as containerd reads them. */
function parseCa(value: unknown, where: string, dir: string): string[] {
  const list = Array.isArray(value) ? value : [value];
  return list.map((v) => {
    const path = asString(v, where);
    return isAbsolute(path) ? path : resolve(dir, path);
  });
}

function parseCapabilities(value: unknown, where: string): Set<HostCapability> {
  if (!Array.isArray(value)) throw new InvalidArgumentError(`${where}: capabilities must be an array of strings`);
  const caps = new Set<HostCapability>();
  for (const c of value) {
    const name = typeof c === "string" ? c.toLowerCase() : "";
    if (!(ALL_CAPABILITIES as readonly string[]).includes(name)) throw new InvalidArgumentError(`${where}: unknown capability ${JSON.stringify(c)}`);
    caps.add(name as HostCapability);
  }
  return caps;
}

function parseHeaders(value: unknown, where: string): Record<string, string> {
  const headers: Record<string, string> = {};
  for (const [name, v] of Object.entries(asTable(value, `${where}: header`))) {
    const values = Array.isArray(v) ? v : [v];
    headers[name.toLowerCase()] = values.map((x) => asString(x, `${where}: header ${name}`)).join(", ");
  }
  return headers;
}

function asTable(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) throw new InvalidArgumentError(`${where} must be a table`);
  return value as Record<string, unknown>;
}
function asString(value: unknown, where: string): string {
  if (typeof value !== "string") throw new InvalidArgumentError(`${where} must be a string`);
  return value;
}
function asBoolean(value: unknown, where: string): boolean {
  if (typeof value !== "boolean") throw new InvalidArgumentError(`${where} must be true or false`);
  return value;
}
