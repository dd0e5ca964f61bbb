// A layer's raw tar entries as overlayfs expects to find a lower layer: as if
// containerd had unpacked it with its overlay whiteout converter. A whiteout
// `dir/.wh.name` shows as `dir/name`, a 0/0 character device; an opaque marker
// `dir/.wh..wh..opq` is hidden and its directory carries
// `trusted.overlay.opaque=y`; a hardlink shows its target's inode. Nothing here
// knows FUSE: paths are clean layer paths ("" is the root).
import type { LayerView } from "../layer/layer-view.js";
import { OPAQUE_MARKER, WHITEOUT_PREFIX, isOpaqueMarker, isWhiteout, whiteoutTarget, type LayerEntry } from "../layer/layer-index.js";

/** The xattr overlayfs reads to treat a lower directory as opaque. */
export const OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque";

/** One name as the unpacked layer would show it. */
export interface ShownEntry {
  /** The entry whose attributes the name shows: a hardlink's target, or the whiteout's own tar entry. */
  readonly entry: LayerEntry;
  /** True when the name is an overlay whiteout (a 0/0 character device). */
  readonly whiteout: boolean;
}

export interface ShownChild {
  readonly name: string;
  readonly shown: ShownEntry;
}

/** Hardlink chains are resolved by the index; this only guards against a malformed one. */
const MAX_LINK_HOPS = 8;

const baseName = (path: string): string => path.slice(path.lastIndexOf("/") + 1);

export class LayerPresentation {
  constructor(readonly view: LayerView) {}

  get digest(): string {
    return this.view.digest;
  }

  /** What `path` shows, or undefined if the unpacked layer has no such name. */
  async resolve(path: string): Promise<ShownEntry | undefined> {
    if (path === "") return this.#shown(await this.view.getAttr(""));
    const slash = path.lastIndexOf("/");
    const parent = slash < 0 ? "" : path.slice(0, slash);
    const name = path.slice(slash + 1);
    // the raw marker and whiteout names never show under their own name
    if (name.startsWith(WHITEOUT_PREFIX)) return undefined;
    // A streaming view answers "absent" only once the whole layer has streamed
    // past; take whichever of the two names turns up first. A complete view
    // answers both at once and the real entry (listed first) wins.
    const found = await firstDefined([
      this.view.lookup(parent, name).then((e) => (e ? { entry: e, whiteout: false } : undefined)),
      this.view.lookup(parent, WHITEOUT_PREFIX + name).then((e) => (e ? { entry: e, whiteout: true } : undefined)),
    ]);
    if (!found || found.whiteout) return found;
    return this.#shown(found.entry);
  }

  /** Children of a directory as unpacked, in layer order (throws as LayerView.readdir). */
  async list(path: string): Promise<ShownChild[]> {
    const raw = await this.view.readdir(path);
    const real = new Set(raw.map((e) => baseName(e.path)).filter((n) => !n.startsWith(WHITEOUT_PREFIX)));
    const out: ShownChild[] = [];
    for (const e of raw) {
      const name = baseName(e.path);
      if (isOpaqueMarker(name)) continue;
      if (isWhiteout(name)) {
        const target = whiteoutTarget(name);
        if (!real.has(target)) out.push({ name: target, shown: { entry: e, whiteout: true } });
        continue;
      }
      const shown = await this.#shown(e);
      if (shown) out.push({ name, shown });
    }
    return out;
  }

  /** Extended attributes of `path`: the entry's own, plus overlay's opaque flag on opaque directories. */
  async xattrs(path: string): Promise<Readonly<Record<string, Buffer>> | undefined> {
    const shown = await this.resolve(path);
    if (!shown) return undefined;
    if (shown.whiteout) return {};
    if (shown.entry.type !== "dir") return shown.entry.xattrs;
    const marker = await this.view.lookup(path, OPAQUE_MARKER);
    return marker ? { ...shown.entry.xattrs, [OVERLAY_OPAQUE_XATTR]: Buffer.from("y") } : shown.entry.xattrs;
  }

  /** A hardlink shows its target: same inode, so the same attributes. */
  async #shown(e: LayerEntry | undefined): Promise<ShownEntry | undefined> {
    let entry = e;
    for (let hops = 0; entry?.type === "hardlink" && hops < MAX_LINK_HOPS; hops++) {
      entry = await this.view.getAttr(entry.linkname);
    }
    if (!entry || entry.type === "hardlink") return undefined;
    return { entry, whiteout: false };
  }
}

/** Resolves with the first promise to settle with a defined value (in settle order), or undefined when none does. */
function firstDefined<T>(promises: Promise<T | undefined>[]): Promise<T | undefined> {
  return new Promise((resolve, reject) => {
    let pending = promises.length;
    for (const p of promises) {
      p.then(
        (v) => {
          if (v !== undefined) resolve(v);
          else if (--pending === 0) resolve(undefined);
        },
        reject,
      );
    }
  });
}
