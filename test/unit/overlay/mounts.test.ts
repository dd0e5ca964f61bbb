import { describe, expect, it } from "vitest";
import { computeMounts } from "../../../snapshotter/overlay/mounts.js";
import { SnapshotLayout } from "../../../snapshotter/overlay/layout.js";

const layout = new SnapshotLayout("/var/lib/augur");

describe("computeMounts, as containerd's overlayfs snapshotter", () => {
  it.each([
    ["active, no parent: rw bind of its own dir", { id: 1, kind: "active" as const, parentIds: [] }, [{ type: "bind", source: "/var/lib/augur/s/1/fs", options: ["rw", "rbind"] }]],
    ["view, no parent: ro bind of its own dir", { id: 2, kind: "view" as const, parentIds: [] }, [{ type: "bind", source: "/var/lib/augur/s/2/fs", options: ["ro", "rbind"] }]],
    ["view of one layer: ro bind of that layer", { id: 3, kind: "view" as const, parentIds: [7] }, [{ type: "bind", source: "/var/lib/augur/s/7/fs", options: ["ro", "rbind"] }]],
    [
      "active on two layers: overlay, nearest parent leftmost",
      { id: 4, kind: "active" as const, parentIds: [9, 8] },
      [{ type: "overlay", source: "overlay", options: ["workdir=/var/lib/augur/s/4/work", "upperdir=/var/lib/augur/s/4/fs", "lowerdir=/var/lib/augur/s/9/fs:/var/lib/augur/s/8/fs"] }],
    ],
    [
      "view of two layers: overlay without upper",
      { id: 5, kind: "view" as const, parentIds: [9, 8] },
      [{ type: "overlay", source: "overlay", options: ["lowerdir=/var/lib/augur/s/9/fs:/var/lib/augur/s/8/fs"] }],
    ],
  ])("%s", (_name, snapshot, expected) => {
    expect(computeMounts(snapshot, layout)).toEqual(expected);
  });

  it("adds index=off first when the kernel has the overlay index feature", () => {
    expect(computeMounts({ id: 4, kind: "active", parentIds: [1] }, layout, { indexOff: true })[0]?.options[0]).toBe("index=off");
  });

  it("keeps 128 layers under the default root within one page of mount options", () => {
    const parents = Array.from({ length: 128 }, (_, i) => 1000 + i);
    const [m] = computeMounts({ id: 99999, kind: "active", parentIds: parents }, layout, { indexOff: true });
    expect(m?.options.join(",").length).toBeLessThan(4096);
  });
});
