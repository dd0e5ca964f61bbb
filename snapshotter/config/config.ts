// augur serve's settings: defaults, then the TOML file from --config, then flags.
// Everything augur writes lives under `root` unless a setting says otherwise,
// so several instances can run side by side.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "smol-toml";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";

export interface ServeConfig {
  /** State directory: metadata, snapshot directories, the API socket. */
  root: string;
  /** Unix socket containerd's proxy_plugins entry points at. */
  socket: string;
  /** HTTP API: a unix socket path, or host:port for TCP. Default: <root>/api.sock. */
  api: string;
}

export const DEFAULT_ROOT = "/var/lib/augur";
export const DEFAULT_SOCKET = "/run/augur/augur.sock";

const KNOWN_KEYS = new Set(["root", "socket", "api"]);

export function loadConfig(flags: Partial<ServeConfig>, configFile?: string): ServeConfig {
  const file = configFile ? readConfigFile(configFile) : {};
  const root = flags.root ?? file.root ?? DEFAULT_ROOT;
  return {
    root,
    socket: flags.socket ?? file.socket ?? DEFAULT_SOCKET,
    api: flags.api ?? file.api ?? join(root, "api.sock"),
  };
}

function readConfigFile(path: string): Partial<ServeConfig> {
  let doc: Record<string, unknown>;
  try {
    doc = parse(readFileSync(path, "utf8"));
  } catch (err) {
    throw new InvalidArgumentError(`cannot read config file ${path}: ${errorMessage(err)}`, { cause: err });
  }
  const out: Partial<ServeConfig> = {};
  for (const [k, v] of Object.entries(doc)) {
    if (!KNOWN_KEYS.has(k)) throw new InvalidArgumentError(`config file ${path}: unknown setting ${JSON.stringify(k)} (known: ${[...KNOWN_KEYS].join(", ")})`);
    if (typeof v !== "string" || v === "") throw new InvalidArgumentError(`config file ${path}: ${k} must be a non-empty string`);
    out[k as keyof ServeConfig] = v;
  }
  return out;
}
