import { describe, expect, it, vi } from "vitest";
import { InvalidArgumentError, UnavailableError } from "../../../snapshotter/errdefs/errors.js";
import { LayerVerificationError } from "../../../snapshotter/fetch/verification.js";
import { DeferredView, FAILED_LAYER_MS } from "../../../snapshotter/remote/deferred-view.js";
import { parseSpec, specFor } from "../../../snapshotter/remote/remote-layer.js";
import type { LayerIndex } from "../../../snapshotter/layer/layer-index.js";
import type { ResolvedImage } from "../../../snapshotter/registry/registry-client.js";
import type { LayerSource } from "../../../snapshotter/source/labels.js";

const D = (c: string): string => `sha256:${c.repeat(64)}`;
const source: LayerSource = { style: "stargz", imageRef: "127.0.0.1:5000/a:1", layerDigest: D("b"), imageLayers: [], urls: [] };
const image = (layers: { mediaType: string; digest: string; annotations?: Record<string, string> }[]): ResolvedImage =>
  ({ digest: D("f"), layers: layers.map((l) => ({ size: 10, ...l })) }) as unknown as ResolvedImage;

describe("specFor", () => {
  it("describes a plain and an eStargz layer from the manifest", () => {
    expect(specFor(source, image([{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: D("b") }]))).toEqual({
      imageRef: source.imageRef, layerDigest: D("b"), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", size: 10,
    });
    const annotated = image([{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: D("b"), annotations: { "containerd.io/snapshot/stargz/toc.digest": D("c") } }]);
    expect(specFor(source, annotated).tocDigest).toBe(D("c"));
  });
  it("refuses what it cannot serve, with the reason", () => {
    expect(() => specFor(source, image([{ mediaType: "application/vnd.oci.image.layer.v1.tar+gzip", digest: D("a") }]))).toThrow(/is not in image/);
    expect(() => specFor(source, image([{ mediaType: "application/vnd.example.layer.v1.tar+lz4", digest: D("b") }]))).toThrow(/unsupported layer media type/);
    expect(() => specFor({ ...source, tocDigest: D("c") }, image([{ mediaType: "application/vnd.oci.image.layer.v1.tar+zstd", digest: D("b") }]))).toThrow(/not eStargz/);
  });
  it("parseSpec checks a stored description", () => {
    const spec = specFor(source, image([{ mediaType: "application/vnd.oci.image.layer.v1.tar", digest: D("b") }]));
    expect(parseSpec(JSON.stringify(spec), "x")).toEqual(spec);
    expect(() => parseSpec('{"imageRef":1}', "s/1/remote.json")).toThrow(/s\/1\/remote.json: not a remote layer description/);
  });
});

describe("DeferredView", () => {
  it("waits for the index, and a failed attempt is retried by the next question", async () => {
    let attempts = 0;
    const index = { digest: D("b"), getAttr: (p: string) => (p === "" ? { uid: 0 } : undefined) } as unknown as LayerIndex;
    const view = new DeferredView(D("b"), async () => {
      attempts++;
      if (attempts === 1) throw new Error("registry gone");
      return index;
    });
    await expect(view.getAttr("")).rejects.toThrow("registry gone");
    expect(view.ready).toBeUndefined();
    await expect(view.getAttr("")).resolves.toEqual({ uid: 0 });
    await view.getAttr("x");
    expect(attempts).toBe(2);
    expect(view.ready).toBe(index);
  });
  it("a layer whose own bytes failed stays failed for a while, without being opened again; one the registry failed is retried", async () => {
    vi.useFakeTimers();
    try {
      for (const [err, retried] of [
        [new LayerVerificationError(D("b"), "digest is wrong"), false],
        [new InvalidArgumentError("tar: pax header at offset 0 claims 1500000000 bytes"), false],
        [new UnavailableError("registry gone"), true],
      ] as const) {
        let attempts = 0;
        const view = new DeferredView(D("b"), async () => {
          attempts++;
          throw err;
        });
        await expect(view.getAttr("")).rejects.toThrow(err.message);
        await expect(view.lookup("", "x")).rejects.toThrow(err.message);
        expect(attempts, err.message).toBe(retried ? 2 : 1);
        await vi.advanceTimersByTimeAsync(FAILED_LAYER_MS + 1);
        await expect(view.getAttr("")).rejects.toThrow(err.message);
        expect(attempts, err.message).toBe(retried ? 3 : 2);
      }
    } finally {
      vi.useRealTimers();
    }
  });
});
