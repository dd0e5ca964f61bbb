import { describe, it, expect } from "vitest";
import { isFailedPrecondition, isNotFound } from "../../../snapshotter/errdefs/errors.js";
import { MediaTypes, parseManifest, parsePlatform, selectManifest, type ImageIndex } from "../../../snapshotter/registry/manifest.js";

const d = (n: number): string => "sha256:" + n.toString(16).padStart(64, "0");
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const caught = (fn: () => unknown): unknown => {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return undefined;
};

describe("parseManifest", () => {
  const layer = { mediaType: "application/vnd.docker.image.rootfs.diff.tar.gzip", digest: d(2), size: 10, annotations: { a: "b" } };
  const dockerManifest = { schemaVersion: 2, mediaType: MediaTypes.dockerManifest, config: { mediaType: "application/vnd.docker.container.image.v1+json", digest: d(1), size: 5 }, layers: [layer] };

  it("accepts a Docker schema2 manifest", () => {
    const parsed = parseManifest(json(dockerManifest), undefined, "m");
    expect(parsed).toEqual({ kind: "manifest", manifest: { ...dockerManifest } });
  });

  it("takes the media type from Content-Type when the body has none", () => {
    const { mediaType: _drop, ...bare } = dockerManifest;
    const parsed = parseManifest(json({ ...bare, schemaVersion: 2 }), `${MediaTypes.ociManifest}; charset=utf-8`, "m");
    expect(parsed.kind === "manifest" && parsed.manifest.mediaType).toBe(MediaTypes.ociManifest);
  });

  it("recognises indexes and manifest lists", () => {
    const list = { schemaVersion: 2, mediaType: MediaTypes.dockerManifestList, manifests: [{ mediaType: MediaTypes.dockerManifest, digest: d(3), size: 7, platform: { os: "linux", architecture: "arm", variant: "v6" } }] };
    const parsed = parseManifest(json(list), undefined, "m");
    expect(parsed).toEqual({ kind: "index", index: list });
  });

  it.each([
    ["not json", Buffer.from("{"), "not valid JSON"],
    ["schema 1", json({ schemaVersion: 1, name: "x" }), "schemaVersion 1"],
    ["artifact", json({ schemaVersion: 2, mediaType: "application/vnd.oci.artifact.manifest.v1+json" }), "unsupported manifest media type"],
    ["bad digest", json({ ...dockerManifest, layers: [{ ...layer, digest: "sha256:xyz" }] }), "layers[0]"],
    ["bad size", json({ ...dockerManifest, config: { ...dockerManifest.config, size: -1 } }), "bad size"],
  ])("rejects %s", (_name, bytes, why) => {
    const err = caught(() => parseManifest(bytes, undefined, "manifest demo:latest at h"));
    expect(isFailedPrecondition(err)).toBe(true);
    expect((err as Error).message).toContain(why);
    expect((err as Error).message).toContain("manifest demo:latest at h");
  });
});

describe("selectManifest", () => {
  const entry = (n: number, os: string, architecture: string, variant?: string) => ({
    mediaType: MediaTypes.ociManifest,
    digest: d(n),
    size: 1,
    platform: { os, architecture, ...(variant ? { variant } : {}) },
  });
  const index: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaTypes.ociIndex,
    manifests: [entry(1, "linux", "arm", "v6"), entry(2, "linux", "arm", "v7"), entry(3, "linux", "arm64", "v8"), entry(4, "windows", "amd64"), entry(5, "linux", "amd64")],
  };

  it.each([
    ["linux/amd64", d(5)],
    ["linux/arm64", d(3)],
    ["linux/arm64/v8", d(3)],
    ["linux/arm", d(2)],
    ["linux/arm/v6", d(1)],
    ["windows/amd64", d(4)],
  ])("%s", (platform, digest) => {
    expect(selectManifest(index, parsePlatform(platform), "idx").digest).toBe(digest);
  });

  it("fails with NotFound listing what the index offers", () => {
    const err = caught(() => selectManifest(index, parsePlatform("linux/s390x"), "image index demo"));
    expect(isNotFound(err)).toBe(true);
    expect((err as Error).message).toContain("linux/s390x");
    expect((err as Error).message).toContain("linux/arm/v6, linux/arm/v7");
  });
});
