// A registry as real ones are: TLS with a certificate from a private CA, and
// bearer tokens from a token server that wants a password (the tests' own,
// signing JWTs the way docker-registry's token auth checks them). augur
// trusts the CA from hosts.toml (`ca`, as containerd reads it), takes the
// password from a docker config.json, gets a token, and serves the image
// lazily through containerd.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, createPrivateKey, randomBytes, sign, X509Certificate } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { removeScratch, run, scratchDir, type Proc } from "../harness/processes.js";
import { buildImage, busyboxLayer } from "../../scripts/images/oci-image.js";
import { issue, selfSigned, skopeoPush, startSecureRegistry } from "../harness/secure-registry.js";

const USER = "augur-test";
const PASSWORD = randomBytes(9).toString("base64url");
const SERVICE = "augur-registry";
const ISSUER = "augur-test-issuer";
const BIG = randomBytes(2 << 20);
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

let dir: string;
let registryProc: Proc;
let registryHost: string;
let tokens: Server;
let augur: Augur;
let containerd: Containerd;
const asked: { user: string | undefined; agent: string | undefined; scope: string | null }[] = [];

const b64url = (b: Buffer | string): string => Buffer.from(b).toString("base64url");

/** A JWT for `scopes` that docker-registry's token auth accepts: RS256, the signing certificate in x5c. */
function jwt(key: string, certPem: string, sub: string, scopes: string[]): string {
  const der = new X509Certificate(certPem).raw.toString("base64");
  const now = Math.floor(Date.now() / 1000);
  const access = scopes.map((s) => {
    const [type, name, actions] = s.split(":");
    return { type, name, actions: (actions ?? "").split(",").filter(Boolean) };
  });
  const head = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", x5c: [der] }));
  const body = b64url(JSON.stringify({ iss: ISSUER, sub, aud: SERVICE, exp: now + 300, nbf: now - 10, iat: now, jti: randomBytes(8).toString("hex"), access }));
  const signature = sign("RSA-SHA256", Buffer.from(`${head}.${body}`), createPrivateKey(key));
  return `${head}.${body}.${b64url(signature)}`;
}

/** The token server: HTTP basic auth with USER:PASSWORD, then a token for the scopes asked. */
function tokenServer(key: string, cert: string): Server {
  return createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://tokens");
    const basic = /^Basic (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const [user, pass] = basic ? Buffer.from(basic, "base64").toString().split(":") : [];
    asked.push({ user, agent: req.headers["user-agent"], scope: url.searchParams.get("scope") });
    if (user !== USER || pass !== PASSWORD) {
      res.writeHead(401, { "www-authenticate": 'Basic realm="tokens"' });
      res.end();
      return;
    }
    const token = jwt(key, cert, user, url.searchParams.getAll("scope"));
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify({ token, access_token: token, expires_in: 300 }));
  });
}

beforeAll(async () => {
  dir = scratchDir("as-tls-");
  // the registry's certificate, signed by a CA of the tests' own; and the token issuer's key
  selfSigned(dir, "ca", "augur test CA");
  issue(dir, "tls", "ca", "/CN=127.0.0.1", "IP:127.0.0.1");
  selfSigned(dir, "token", "augur test token issuer");

  tokens = tokenServer(readFileSync(join(dir, "token.key"), "utf8"), readFileSync(join(dir, "token.crt"), "utf8"));
  await new Promise<void>((r) => tokens.listen(0, "127.0.0.1", r));
  const tokenPort = (tokens.address() as AddressInfo).port;

  ({ host: registryHost, proc: registryProc } = await startSecureRegistry(dir, {
    tls: { certificate: join(dir, "tls.crt"), key: join(dir, "tls.key") },
    token: { realm: `http://127.0.0.1:${tokenPort}/token`, service: SERVICE, issuer: ISSUER, rootcertbundle: join(dir, "token.crt") },
  }));

  // containerd's way to name the CA, read by ctr and by augur alike
  const hostDir = join(dir, "certs.d", registryHost);
  mkdirSync(hostDir, { recursive: true });
  writeFileSync(join(hostDir, "hosts.toml"), `server = "https://${registryHost}"\n\n[host."https://${registryHost}"]\n  capabilities = ["pull", "resolve", "push"]\n  ca = "ca.crt"\n`);
  writeFileSync(join(hostDir, "ca.crt"), readFileSync(join(dir, "ca.crt")));
  writeFileSync(join(dir, "docker-config.json"), JSON.stringify({ auths: { [registryHost]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString("base64") } } }));

  const image = await buildImage(join(dir, "img"), { layers: [busyboxLayer(), [{ type: "file", path: "big.bin", content: BIG }]], cmd: ["/bin/sh"] });
  await skopeoPush(image.dir, `${registryHost}/private/img:1`, hostDir, USER, PASSWORD);

  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy", "--hosts-dir", join(dir, "certs.d"), "--docker-config", join(dir, "docker-config.json")] });
  containerd = await startContainerd(dir, augur.socket);
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registryProc?.stop();
  tokens?.closeAllConnections();
  await new Promise((r) => (tokens ? tokens.close(r) : r(undefined)));
  await removeScratch(dir);
}, 120_000);

describe("a registry with TLS from a private CA and bearer tokens", () => {
  it("serves the image lazily: augur trusts the hosts.toml CA, gets a token with the config.json password, and reads right", async () => {
    const ref = `${registryHost}/private/img:1`;
    const pulled = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--hosts-dir", join(dir, "certs.d"), "--user", `${USER}:${PASSWORD}`, "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
    expect(pulled.code, pulled.stderr).toBe(0);
    const out = await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, "tls-1", "md5sum", "/big.bin"], 120_000);
    expect(out).toBe(`${md5(BIG)}  /big.bin\n`);
    expect(augur.proc.log()).toMatch(/layer mounted lazily/);
    // augur asked the token server itself, with the password, for pull access to the repository
    const augurs = asked.filter((a) => a.agent?.startsWith("augur"));
    expect(augurs.length).toBeGreaterThan(0);
    expect(augurs.every((a) => a.user === USER)).toBe(true);
    expect(augurs.some((a) => a.scope === "repository:private/img:pull")).toBe(true);
    // and the blobs came over TLS with that token: the registry logged them for the user
    const log = registryProc.log();
    expect(log).toMatch(new RegExp(`"GET /v2/private/img/blobs/sha256:[0-9a-f]{64} HTTP/[\\d.]+" 20[06] \\d+ "" "augur`));
  });
});
