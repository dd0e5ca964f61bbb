// Registry credentials from a docker `config.json` (`auths` section), the file
// `docker login` writes. No file means anonymous access.
import { readFile } from "node:fs/promises";
import { homedir } from "node:os";
import { join } from "node:path";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import { DOCKER_HUB } from "./reference.js";

const log = logger("registry");

/** What a registry host accepts from us: a user and password, or an OAuth2 refresh token. */
export type Credentials = { username: string; password: string } | { identityToken: string };

/** Credentials for a registry host, or undefined for anonymous access. */
export type CredentialStore = (host: string) => Credentials | undefined;

export const anonymous: CredentialStore = () => undefined;

/** `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
export function defaultDockerConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.DOCKER_CONFIG ?? join(homedir(), ".docker"), "config.json");
}

/** Reads the docker config at `path` (default location when omitted); a missing file means anonymous. */
export async function loadDockerCredentials(path = defaultDockerConfigPath()): Promise<CredentialStore> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return anonymous;
    throw err;
  }
  return parseDockerConfig(text, path);
}

/** Parses a docker config.json; `source` names it in errors. */
export function parseDockerConfig(text: string, source = "config.json"): CredentialStore {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new InvalidArgumentError(`${source}: invalid JSON: ${errorMessage(err)}`, { cause: err });
  }
  if (typeof doc !== "object" || doc === null) throw new InvalidArgumentError(`${source}: not a JSON object`);
  const { auths, credsStore, credHelpers } = doc as Record<string, unknown>;
  if (credsStore !== undefined || credHelpers !== undefined) {
    log.info("docker credential helpers are not supported; only inline auths are used", { source });
  }
  const table = new Map<string, Credentials>();
  if (typeof auths === "object" && auths !== null) {
    for (const [key, entry] of Object.entries(auths as Record<string, unknown>)) {
      const creds = parseAuthEntry(entry, `${source}: auths[${JSON.stringify(key)}]`);
      if (creds) table.set(normaliseHost(key), creds);
    }
  }
  return (host) => table.get(normaliseHost(host));
}

function parseAuthEntry(entry: unknown, where: string): Credentials | undefined {
  if (typeof entry !== "object" || entry === null) return undefined;
  const { auth, username, password, identitytoken } = entry as Record<string, unknown>;
  if (typeof identitytoken === "string" && identitytoken !== "") return { identityToken: identitytoken };
  if (typeof auth === "string" && auth !== "") {
    const decoded = Buffer.from(auth, "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) throw new InvalidArgumentError(`${where}: auth is not base64 of user:password`);
    return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
  }
  if (typeof username === "string" && typeof password === "string") return { username, password };
  return undefined;
}

/** `https://index.docker.io/v1/` and `registry-1.docker.io` are both Docker Hub; scheme and path are dropped. */
export function normaliseHost(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, "").replace(/\/.*$/, "").toLowerCase();
  return host === "index.docker.io" || host === "registry-1.docker.io" ? DOCKER_HUB : host;
}
