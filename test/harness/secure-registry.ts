// A registry as private ones are: TLS from a CA of the tests' own, and some
// authentication (bearer tokens, htpasswd), with the keys and certificates
// made by openssl in a scratch directory.
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { registryConfig, type RegistrySecurity } from "../../scripts/lib/registry.js";
import { canConnect, freePort, run, startProcess, waitFor, type Proc } from "./processes.js";

const openssl = (args: string[]): void => void execFileSync("openssl", args, { stdio: "ignore" });

/** A self-signed CA (or token issuer): `<dir>/<name>.key` and `<dir>/<name>.crt`. */
export function selfSigned(dir: string, name: string, cn: string): void {
  openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", `/CN=${cn}`, "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.crt`)]);
}

/** A key and a certificate signed by CA `ca`, for `subject`: a server's with the `san` given, else a client's. */
export function issue(dir: string, name: string, ca: string, subject: string, san?: string): void {
  openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", join(dir, `${name}.key`), "-out", join(dir, `${name}.csr`)]);
  writeFileSync(join(dir, `${name}.ext`), san ? `subjectAltName=${san}\n` : "extendedKeyUsage=clientAuth\n");
  openssl(["x509", "-req", "-in", join(dir, `${name}.csr`), "-CA", join(dir, `${ca}.crt`), "-CAkey", join(dir, `${ca}.key`), "-CAcreateserial", "-days", "2", "-extfile", join(dir, `${name}.ext`), "-out", join(dir, `${name}.crt`)]);
}

/** docker-registry with `security` on 127.0.0.1, storage and log under `dir`. */
export async function startSecureRegistry(dir: string, security: RegistrySecurity): Promise<{ host: string; proc: Proc }> {
  const port = await freePort();
  const host = `127.0.0.1:${port}`;
  mkdirSync(join(dir, "registry-data"));
  writeFileSync(join(dir, "registry.yml"), registryConfig({ storage: join(dir, "registry-data"), addr: host, security }));
  const proc = startProcess("docker-registry", ["serve", join(dir, "registry.yml")], join(dir, "registry.log"));
  await waitFor("the secured registry to listen", () => canConnect({ port, host: "127.0.0.1" }), 20_000, proc);
  return { host, proc };
}

/** Pushes an OCI layout's image with skopeo (not execFileSync: a token server the tests run is on this thread). */
export async function skopeoPush(layout: string, ref: string, certDir: string, user: string, password: string): Promise<void> {
  const pushed = await run("skopeo", ["copy", "--quiet", "--dest-cert-dir", certDir, "--dest-creds", `${user}:${password}`, "--preserve-digests", `oci:${layout}:latest`, `docker://${ref}`], { timeoutMs: 120_000 });
  if (pushed.code !== 0) throw new Error(`skopeo copy: ${pushed.stderr}`);
}
