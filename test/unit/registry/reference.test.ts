import { describe, it, expect } from "vitest";
import { isInvalidArgument } from "../../../snapshotter/errdefs/errors.js";
import { formatReference, parseReference } from "../../../snapshotter/registry/reference.js";

const D = "sha256:" + "ab".repeat(32);

describe("parseReference", () => {
  it.each([
    ["busybox", { host: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["busybox:1.36", { host: "docker.io", repository: "library/busybox", tag: "1.36" }],
    ["library/busybox", { host: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["myuser/app:v1", { host: "docker.io", repository: "myuser/app", tag: "v1" }],
    ["docker.io/busybox", { host: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["index.docker.io/library/busybox", { host: "docker.io", repository: "library/busybox", tag: "latest" }],
    ["ghcr.io/org/team/app:1.0", { host: "ghcr.io", repository: "org/team/app", tag: "1.0" }],
    ["127.0.0.1:5000/demo:latest", { host: "127.0.0.1:5000", repository: "demo", tag: "latest" }],
    ["localhost/demo", { host: "localhost", repository: "demo", tag: "latest" }],
    ["localhost:5000/a/b", { host: "localhost:5000", repository: "a/b", tag: "latest" }],
    ["[::1]:5000/demo:x", { host: "[::1]:5000", repository: "demo", tag: "x" }],
    [`busybox@${D}`, { host: "docker.io", repository: "library/busybox", digest: D }],
    [`quay.io/a/b:t@${D}`, { host: "quay.io", repository: "a/b", tag: "t", digest: D }],
    ["a.b/c_d.e-f__g:T_1.x-y", { host: "a.b", repository: "c_d.e-f__g", tag: "T_1.x-y" }],
  ])("%s", (ref, want) => {
    expect(parseReference(ref)).toEqual(want);
  });

  it.each([
    ["", "empty"],
    ["Busybox", "lowercase"],
    ["docker.io/Library/busybox", "lowercase"],
    ["busybox:", "bad tag"],
    ["busybox:-x", "bad tag"],
    ["busybox@sha256:abc", "sha256 needs 64"],
    ["busybox@md5:" + "a".repeat(32), "unsupported algorithm"],
    ["ghcr.io/", "missing repository"],
    ["a//b", "bad repository path component"],
    ["-bad.io/x", "bad registry host"],
    ["x/" + "a".repeat(300), "longer than 255"],
  ])("rejects %j (%s)", (ref, why) => {
    let caught: unknown;
    try {
      parseReference(ref);
    } catch (err) {
      caught = err;
    }
    expect(isInvalidArgument(caught)).toBe(true);
    expect((caught as Error).message).toContain(why);
    expect((caught as Error).message).toContain(JSON.stringify(ref));
  });

  it("formats back to the canonical form", () => {
    expect(formatReference(parseReference("busybox"))).toBe("docker.io/library/busybox:latest");
    expect(formatReference(parseReference(`127.0.0.1:5000/x@${D}`))).toBe(`127.0.0.1:5000/x@${D}`);
  });
});
