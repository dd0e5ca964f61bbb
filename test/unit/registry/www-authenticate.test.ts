import { describe, it, expect } from "vitest";
import { parseWwwAuthenticate } from "../../../snapshotter/registry/www-authenticate.js";

describe("parseWwwAuthenticate", () => {
  it("parses a docker hub bearer challenge", () => {
    const h = 'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"';
    expect(parseWwwAuthenticate(h)).toEqual([
      { scheme: "bearer", params: { realm: "https://auth.docker.io/token", service: "registry.docker.io", scope: "repository:library/busybox:pull" } },
    ]);
  });

  it("parses several challenges, token values, spaces and escapes", () => {
    const h = 'Basic realm="Registry Realm", Bearer realm="https://a/t", service=reg.example, error="insufficient_scope", x="a\\"b"';
    expect(parseWwwAuthenticate(h)).toEqual([
      { scheme: "basic", params: { realm: "Registry Realm" } },
      { scheme: "bearer", params: { realm: "https://a/t", service: "reg.example", error: "insufficient_scope", x: 'a"b' } },
    ]);
  });

  it("keeps scopes with commas and colons inside quotes", () => {
    const h = 'Bearer realm="https://r/t",scope="repository:a/b:pull,push repository:c:pull"';
    expect(parseWwwAuthenticate(h)[0]?.params.scope).toBe("repository:a/b:pull,push repository:c:pull");
  });

  it("accepts several header values and case-insensitive names", () => {
    expect(parseWwwAuthenticate(['BASIC Realm="r"', 'bearer REALM="https://x"'])).toEqual([
      { scheme: "basic", params: { realm: "r" } },
      { scheme: "bearer", params: { realm: "https://x" } },
    ]);
  });

  it("returns nothing for a missing or empty header", () => {
    expect(parseWwwAuthenticate(undefined)).toEqual([]);
    expect(parseWwwAuthenticate("")).toEqual([]);
  });

  it("skips a token68 credential", () => {
    expect(parseWwwAuthenticate('Negotiate abc123==, Basic realm="x"')).toEqual([
      { scheme: "negotiate", params: {} },
      { scheme: "basic", params: { realm: "x" } },
    ]);
  });
});
