// Registry authorization: answers `WWW-Authenticate` challenges with basic
// credentials or bearer tokens (docker token protocol, OAuth2 refresh tokens
// for `identitytoken`), caches tokens per host and scope until they expire,
// and remembers each host's challenge so later scopes skip the 401 round trip.
import { FailedPreconditionError, errorMessage } from "../errdefs/errors.js";
import { logger } from "../util/logging.js";
import type { CredentialStore, Credentials } from "./credentials.js";
import type { RegistryEndpoint } from "./hosts.js";
import { readBody, type HttpTransport, type HttpResponse } from "./http-transport.js";
import type { Challenge } from "./www-authenticate.js";

const log = logger("registry");
const DEFAULT_TOKEN_SECONDS = 60;
const MAX_TOKEN_RESPONSE = 1 << 20;

/** Scope for pulling from `repository`, as in the docker token protocol. */
export const pullScope = (repository: string): string => `repository:${repository}:pull`;
/** What pushing needs: a token server is asked for both. */
export const pushScope = (repository: string): string => `repository:${repository}:pull,push`;

interface CachedToken {
  header: string;
  expiresAt: number;
}

export class Authorizer {
  readonly #transport: HttpTransport;
  readonly #credentials: CredentialStore;
  /** Last challenge per endpoint host. */
  readonly #challenges = new Map<string, Challenge>();
  /** Authorization header per `host scope`, with in-flight fetches deduped. */
  readonly #tokens = new Map<string, Promise<CachedToken>>();

  constructor(transport: HttpTransport, credentials: CredentialStore) {
    this.#transport = transport;
    this.#credentials = credentials;
  }

  /** The Authorization header to send to `endpoint` for `scope`, if the host asked for one before. */
  async header(endpoint: RegistryEndpoint, scope: string): Promise<string | undefined> {
    const challenge = this.#challenges.get(endpoint.host);
    if (!challenge) return undefined;
    const key = `${endpoint.host} ${scope}`;
    const cached = this.#tokens.get(key);
    if (cached) {
      try {
        const token = await cached;
        if (token.expiresAt > Date.now()) return token.header;
      } catch {
        // a failed fetch is retried below
      }
      if (this.#tokens.get(key) === cached) this.#tokens.delete(key);
    }
    const fresh = this.#authorize(endpoint, challenge, scope);
    this.#tokens.set(key, fresh);
    fresh.catch(() => this.#tokens.get(key) === fresh && this.#tokens.delete(key));
    return (await fresh).header;
  }

  /**
   * Learns the challenges of a 401 from `endpoint`. Returns true when a retry
   * with `header()` may succeed (a supported scheme we can answer).
   */
  challenge(endpoint: RegistryEndpoint, challenges: Challenge[], scope: string): boolean {
    const bearer = challenges.find((c) => c.scheme === "bearer" && c.params.realm);
    const basic = challenges.find((c) => c.scheme === "basic");
    const creds = this.#credentials(endpoint.host);
    const chosen = bearer ?? (basic && creds && "username" in creds ? basic : undefined);
    if (!chosen) return false;
    this.#challenges.set(endpoint.host, chosen);
    this.#tokens.delete(`${endpoint.host} ${scope}`);
    return true;
  }

  async #authorize(endpoint: RegistryEndpoint, challenge: Challenge, scope: string): Promise<CachedToken> {
    const creds = this.#credentials(endpoint.host);
    if (challenge.scheme === "basic") {
      if (!creds || !("username" in creds)) throw new FailedPreconditionError(`${endpoint.host}: basic authentication required and no credentials configured`);
      return { header: basicHeader(creds), expiresAt: Number.POSITIVE_INFINITY };
    }
    return this.#fetchToken(endpoint, challenge, scope, creds);
  }

  async #fetchToken(endpoint: RegistryEndpoint, challenge: Challenge, scope: string, creds: Credentials | undefined): Promise<CachedToken> {
    const realm = new URL(challenge.params.realm ?? "");
    const service = challenge.params.service;
    const what = `token for ${scope} from ${realm.host} (registry ${endpoint.host})`;
    const started = Date.now();
    const req = creds && "identityToken" in creds ? refreshTokenRequest(realm, service, scope, creds.identityToken) : getTokenRequest(realm, service, scope, creds);
    const body = await this.#transport.send({ ...req, what, skipVerify: endpoint.skipVerify, ...(endpoint.ca ? { ca: endpoint.ca } : {}), ...(endpoint.client ? { client: endpoint.client } : {}) }, (res) => readTokenResponse(res, what));
    const token = body.token ?? body.access_token;
    if (typeof token !== "string" || token === "") throw new FailedPreconditionError(`${what}: token response has no token`);
    const seconds = typeof body.expires_in === "number" && body.expires_in > 0 ? body.expires_in : DEFAULT_TOKEN_SECONDS;
    log.debug("fetched registry token", { host: endpoint.host, scope, expiresIn: seconds, anonymous: creds === undefined });
    return { header: `Bearer ${token}`, expiresAt: started + Math.max(seconds - 10, seconds / 2) * 1000 };
  }
}

function basicHeader(creds: { username: string; password: string }): string {
  return `Basic ${Buffer.from(`${creds.username}:${creds.password}`).toString("base64")}`;
}

function getTokenRequest(realm: URL, service: string | undefined, scope: string, creds: Credentials | undefined) {
  const url = new URL(realm);
  if (service) url.searchParams.set("service", service);
  url.searchParams.set("scope", scope);
  const headers: Record<string, string> = creds && "username" in creds ? { authorization: basicHeader(creds) } : {};
  return { url: url.toString(), method: "GET" as const, headers };
}

function refreshTokenRequest(realm: URL, service: string | undefined, scope: string, refreshToken: string) {
  const form = new URLSearchParams({ grant_type: "refresh_token", refresh_token: refreshToken, client_id: "augur", scope });
  if (service) form.set("service", service);
  return { url: realm.toString(), method: "POST" as const, headers: { "content-type": "application/x-www-form-urlencoded" }, body: form.toString() };
}

interface TokenResponse {
  token?: unknown;
  access_token?: unknown;
  expires_in?: unknown;
}

async function readTokenResponse(res: HttpResponse, what: string): Promise<TokenResponse> {
  const text = (await readBody(res, MAX_TOKEN_RESPONSE, what)).toString("utf8");
  if (res.status === 401 || res.status === 403) throw new FailedPreconditionError(`${what}: credentials rejected (HTTP ${res.status})`);
  if (res.status !== 200) throw new FailedPreconditionError(`${what}: HTTP ${res.status}: ${text.slice(0, 200)}`);
  try {
    return JSON.parse(text) as TokenResponse;
  } catch (err) {
    throw new FailedPreconditionError(`${what}: token response is not JSON: ${errorMessage(err)}`, { cause: err });
  }
}
