// computeMounts: what containerd must mount for a snapshot, exactly as its
// overlayfs snapshotter decides (snapshots/overlay/overlay.go `mounts`).
import type { Kind, Mount } from "../snapshots/snapshotter.js";
import type { SnapshotLayout } from "./layout.js";

export interface MountOptions {
  /** Add `index=off` (set when the kernel's overlay module has the index feature). */
  indexOff: boolean;
  /** The directory a committed parent is read from; default its `fs`. */
  lowerDir?: (id: number) => string;
}

export function computeMounts(
  snapshot: { id: number; kind: Kind; parentIds: number[] },
  layout: SnapshotLayout,
  opts: MountOptions = { indexOff: false },
): Mount[] {
  const { id, kind, parentIds } = snapshot;
  const lower = opts.lowerDir ?? ((p: number) => layout.fs(p));
  if (parentIds.length === 0) {
    // A single layer cannot be an overlay: hand out the directory itself.
    return [{ type: "bind", source: layout.fs(id), options: [kind === "view" ? "ro" : "rw", "rbind"] }];
  }
  const options: string[] = [];
  if (opts.indexOff) options.push("index=off");
  if (kind === "active") {
    options.push(`workdir=${layout.work(id)}`, `upperdir=${layout.fs(id)}`);
  } else if (parentIds.length === 1) {
    // A read-only view of one layer is that layer, bound read-only.
    return [{ type: "bind", source: lower(parentIds[0] as number), options: ["ro", "rbind"] }];
  }
  // The nearest parent is leftmost: overlayfs gives the first lowerdir precedence.
  options.push(`lowerdir=${parentIds.map(lower).join(":")}`);
  return [{ type: "overlay", source: "overlay", options }];
}
