// What a layer shows through FUSE, without FUSE: whiteouts, opaque markers,
// hardlinks and struct stat, over a real tar index.
import { constants } from "node:fs";
import { beforeAll, describe, expect, it } from "vitest";
import { layerTar } from "../../../scripts/images/oci-image.js";
import { makeDev, statOf } from "../../../snapshotter/fuse/entry-stat.js";
import { LayerPresentation, OVERLAY_OPAQUE_XATTR } from "../../../snapshotter/fuse/layer-presentation.js";
import { viewOf } from "../../../snapshotter/layer/layer-view.js";
import { buildTarIndex } from "../../../snapshotter/layer/tar-index.js";
import { TarLayerIndex } from "../../../snapshotter/layer/tar-layer.js";
import { chunks, countingSource, joinTars, rawTar, sha256 } from "../layer/helpers.js";

let layer: LayerPresentation;
beforeAll(async () => {
  const tarball = joinTars(
    await layerTar([
      { type: "file", path: "a/keep", content: "keep\n", mode: 0o600, uid: 7, gid: 8 },
      { type: "whiteout", path: "a/gone" },
      { type: "whiteout", path: "a/keep" }, // a whiteout and a real entry of one name: the real one shows
      { type: "opaque", path: "d" },
      { type: "file", path: "d/z", content: "z\n" },
      { type: "link", path: "a/again", target: "a/keep" },
      { type: "symlink", path: "a/sym", target: "keep" },
    ]),
    await rawTar([{ header: { name: "dev/big", type: "block-device", devmajor: 259, devminor: 300, mode: 0o600 } }]),
  );
  const index = await buildTarIndex(chunks(tarball), { digest: sha256(tarball), mediaType: "application/vnd.oci.image.layer.v1.tar" });
  layer = new LayerPresentation(viewOf(new TarLayerIndex(index, countingSource(tarball))));
});

describe("LayerPresentation", () => {
  it("shows a whiteout under the name it hides, and hides raw whiteout and opaque names", async () => {
    const gone = await layer.resolve("a/gone");
    expect(gone?.whiteout).toBe(true);
    expect(await layer.resolve("a/.wh.gone")).toBeUndefined();
    expect(await layer.resolve("d/.wh..wh..opq")).toBeUndefined();
    expect((await layer.list("a")).map((c) => `${c.name}:${c.shown.whiteout}`)).toEqual(["keep:false", "gone:true", "again:false", "sym:false"]);
    expect((await layer.list("d")).map((c) => c.name)).toEqual(["z"]);
  });

  it("marks opaque directories with overlay's xattr only", async () => {
    expect((await layer.xattrs("d"))?.[OVERLAY_OPAQUE_XATTR]?.toString()).toBe("y");
    expect(await layer.xattrs("a")).toEqual({});
    expect(await layer.xattrs("nope")).toBeUndefined();
  });

  it("gives a hardlink its target's inode and attributes", async () => {
    const [keep, again] = [await layer.resolve("a/keep"), await layer.resolve("a/again")];
    expect(keep && again && statOf(again)).toEqual(keep && statOf(keep));
    expect(keep && statOf(keep)).toMatchObject({ mode: constants.S_IFREG | 0o600, uid: 7, gid: 8, nlink: 2, size: 5 });
  });

  it("builds struct stat: whiteouts 0/0 char devices, devices with rdev, symlinks sized by target", async () => {
    const gone = await layer.resolve("a/gone");
    expect(gone && statOf(gone)).toMatchObject({ mode: constants.S_IFCHR, rdev: 0, uid: 0, gid: 0, nlink: 1, size: 0 });
    const big = await layer.resolve("dev/big");
    expect(big && statOf(big)).toMatchObject({ mode: constants.S_IFBLK | 0o600, rdev: makeDev(259, 300) });
    const sym = await layer.resolve("a/sym");
    expect(sym && statOf(sym)).toMatchObject({ mode: constants.S_IFLNK | 0o777, size: 4 });
  });

  it("encodes dev_t as Linux does (major 12 bits, minor 20 bits)", () => {
    expect(makeDev(1, 3)).toBe(0x103);
    expect(makeDev(8, 0)).toBe(0x800);
    expect(makeDev(259, 300)).toBe(0x11032c); // the minor's bits above 8 go from bit 20 up
  });
});
