// A registry that wants a client certificate (mutual TLS) and a password
// (htpasswd basic auth), as private registries inside companies often do:
// augur presents the client certificate hosts.toml names (`client`, as
// containerd reads it), sends the config.json password, and serves the image
// lazily through containerd. Without the certificate it is refused.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash, randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { AUGUR_BIN, startAugur, type Augur } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { removeScratch, run, scratchDir, type Proc } from "../harness/processes.js";
import { buildImage, busyboxLayer } from "../../scripts/images/oci-image.js";
import { issue, selfSigned, skopeoPush, startSecureRegistry } from "../harness/secure-registry.js";

const USER = "augur-basic";
const PASSWORD = randomBytes(9).toString("base64url");
const BIG = randomBytes(1 << 20);
const md5 = (b: Buffer): string => createHash("md5").update(b).digest("hex");

let dir: string;
let registryProc: Proc;
let registryHost: string;
let augur: Augur;
let containerd: Containerd;
let ref: string;

beforeAll(async () => {
  dir = scratchDir("as-mtls-");
  selfSigned(dir, "ca", "augur test CA");
  selfSigned(dir, "clientca", "augur client CA");
  issue(dir, "tls", "ca", "/CN=127.0.0.1", "IP:127.0.0.1");
  issue(dir, "client", "clientca", "/CN=augur node");
  writeFileSync(join(dir, "htpasswd"), `${USER}:${bcrypt.hashSync(PASSWORD, 10)}\n`);

  ({ host: registryHost, proc: registryProc } = await startSecureRegistry(dir, {
    tls: { certificate: join(dir, "tls.crt"), key: join(dir, "tls.key"), clientcas: [join(dir, "clientca.crt")] },
    htpasswd: { realm: "augur-test", path: join(dir, "htpasswd") },
  }));

  // one directory for containerd, augur and skopeo alike: the CA, and the client pair
  const hostDir = join(dir, "certs.d", registryHost);
  mkdirSync(hostDir, { recursive: true });
  copyFileSync(join(dir, "ca.crt"), join(hostDir, "ca.crt"));
  copyFileSync(join(dir, "client.crt"), join(hostDir, "client.cert"));
  copyFileSync(join(dir, "client.key"), join(hostDir, "client.key"));
  // containerd's one-file form: the certificate and its key in one PEM
  writeFileSync(join(hostDir, "client.pem"), Buffer.concat([readFileSync(join(dir, "client.crt")), readFileSync(join(dir, "client.key"))]));
  writeFileSync(join(hostDir, "hosts.toml"), [
    // containerd 1.6 needs a [host] table; the server entry has the same settings (the one-file form of client)
    `server = "https://${registryHost}"`, 'ca = "ca.crt"', 'client = "client.pem"', "",
    `[host."https://${registryHost}"]`, '  capabilities = ["pull", "resolve", "push"]', '  ca = "ca.crt"', '  client = [["client.cert", "client.key"]]', "",
  ].join("\n"));
  // the same CA without the client certificate
  const bare = join(dir, "bare.d", registryHost);
  mkdirSync(bare, { recursive: true });
  copyFileSync(join(dir, "ca.crt"), join(bare, "ca.crt"));
  writeFileSync(join(bare, "hosts.toml"), `server = "https://${registryHost}"\nca = "ca.crt"\n\n[host."https://${registryHost}"]\n  ca = "ca.crt"\n`);
  writeFileSync(join(dir, "docker-config.json"), JSON.stringify({ auths: { [registryHost]: { auth: Buffer.from(`${USER}:${PASSWORD}`).toString("base64") } } }));

  const image = await buildImage(join(dir, "img"), { layers: [busyboxLayer(), [{ type: "file", path: "big.bin", content: BIG }]], cmd: ["/bin/sh"] });
  ref = `${registryHost}/private/mtls:1`;
  await skopeoPush(image.dir, ref, hostDir, USER, PASSWORD);

  augur = await startAugur(dir, { root: join(dir, "r"), extraArgs: ["--no-native-copy", "--hosts-dir", join(dir, "certs.d"), "--docker-config", join(dir, "docker-config.json")] });
  containerd = await startContainerd(dir, augur.socket);
}, 300_000);

afterAll(async () => {
  await containerd?.stop();
  await augur?.stop();
  await registryProc?.stop();
  await removeScratch(dir);
}, 120_000);

describe("a registry with client certificates and htpasswd", () => {
  it("serves the image lazily: augur presents the hosts.toml client certificate and the config.json password", async () => {
    const pulled = await run("ctr-remote", ["--address", containerd.address, "images", "rpull", "--hosts-dir", join(dir, "certs.d"), "--user", `${USER}:${PASSWORD}`, "--snapshotter", "augur", ref], { timeoutMs: 120_000 });
    expect(pulled.code, pulled.stderr).toBe(0);
    expect(await containerd.ctrOk(["run", "--snapshotter", "augur", "--rm", ref, "mtls-1", "md5sum", "/big.bin"], 120_000)).toBe(`${md5(BIG)}  /big.bin\n`);
    expect(augur.proc.log()).toMatch(/layer mounted lazily/);
    // the layer bytes went to augur, for the htpasswd user
    // (htpasswd answers 401 without the password, and the TLS handshake fails without the certificate)
    expect(registryProc.log()).toMatch(/"GET \/v2\/private\/mtls\/blobs\/sha256:[0-9a-f]{64} HTTP\/[\d.]+" 20[06] \d+ "" "augur/);
  });

  it("without the client certificate the registry refuses augur, and the error names the registry", async () => {
    const r = await run(process.execPath, [AUGUR_BIN, "manifest", "show", ref, "--hosts-dir", join(dir, "bare.d"), "--docker-config", join(dir, "docker-config.json")], { timeoutMs: 120_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain(registryHost);
    const ok = await run(process.execPath, [AUGUR_BIN, "manifest", "show", ref, "--hosts-dir", join(dir, "certs.d"), "--docker-config", join(dir, "docker-config.json")], { timeoutMs: 120_000 });
    // with it, the registry answers: the image has no augur artifact, which is what show says
    expect(ok.stderr).not.toMatch(/certificate|socket|ECONNRESET/i);
  });
});
