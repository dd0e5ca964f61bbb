// Where snapshot directories live under --root. Paths are kept short on
// purpose: an image of 128 layers puts 128 of them into one `lowerdir=`
// option, and mount(2) takes at most one page (4096 bytes) of options.
import { join } from "node:path";

export class SnapshotLayout {
  constructor(readonly root: string) {}

  /** Parent of every snapshot directory; also holds `new-*` and `rm-*` transients. */
  get snapshotsDir(): string {
    return join(this.root, "s");
  }
  dir(id: number): string {
    return join(this.snapshotsDir, String(id));
  }
  /** The snapshot's own files: overlay upperdir for active snapshots, a lowerdir once committed. */
  fs(id: number): string {
    return join(this.dir(id), "fs");
  }
  /** A lazily served layer unpacked once complete; new mounts read it instead of `fs`. */
  native(id: number): string {
    return join(this.dir(id), "native");
  }
  work(id: number): string {
    return join(this.dir(id), "work");
  }
  get metadataFile(): string {
    return join(this.root, "metadata.db");
  }
}
