import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, it, expect } from "vitest";
import { isInvalidArgument } from "../../../snapshotter/errdefs/errors.js";
import { defaultDockerConfigPath, loadDockerCredentials, parseDockerConfig } from "../../../snapshotter/registry/credentials.js";

const b64 = (s: string): string => Buffer.from(s).toString("base64");

describe("docker config credentials", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "augur-creds-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("reads auth, username/password and identitytoken entries from a file", async () => {
    const path = join(dir, "config.json");
    writeFileSync(
      path,
      JSON.stringify({
        auths: {
          "127.0.0.1:5000": { auth: b64("alice:pa:ss") },
          "https://registry.example.com/v2/": { username: "bob", password: "secret" },
          "https://index.docker.io/v1/": { auth: b64("hub:token") },
          "ghcr.io": { identitytoken: "refresh-me" },
          "empty.example": {},
        },
      }),
    );
    const creds = await loadDockerCredentials(path);
    expect(creds("127.0.0.1:5000")).toEqual({ username: "alice", password: "pa:ss" });
    expect(creds("registry.example.com")).toEqual({ username: "bob", password: "secret" });
    expect(creds("docker.io")).toEqual({ username: "hub", password: "token" });
    expect(creds("registry-1.docker.io")).toEqual({ username: "hub", password: "token" });
    expect(creds("ghcr.io")).toEqual({ identityToken: "refresh-me" });
    expect(creds("empty.example")).toBeUndefined();
    expect(creds("other.example")).toBeUndefined();
  });

  it("treats a missing file as anonymous", async () => {
    const creds = await loadDockerCredentials(join(dir, "nope", "config.json"));
    expect(creds("docker.io")).toBeUndefined();
  });

  it("finds the file through DOCKER_CONFIG, else under the home directory", () => {
    expect(defaultDockerConfigPath({ DOCKER_CONFIG: dir })).toBe(join(dir, "config.json"));
    expect(defaultDockerConfigPath({})).toMatch(/\.docker\/config\.json$/);
  });

  it("rejects invalid JSON and auth without a colon, naming the file", () => {
    expect(() => parseDockerConfig("{", "/x/config.json")).toThrow(/\/x\/config\.json: invalid JSON/);
    let caught: unknown;
    try {
      parseDockerConfig(JSON.stringify({ auths: { h: { auth: b64("nocolon") } } }), "cfg");
    } catch (err) {
      caught = err;
    }
    expect(isInvalidArgument(caught)).toBe(true);
    expect((caught as Error).message).toContain('auths["h"]');
  });
});
