// The directory tree of one layer, built from its tar entries in order, shared
// by the eStargz TOC and the tar index. Follows tar extraction semantics: a
// later entry for the same path replaces the earlier one, parents missing from
// the archive are implied (0755 root:root), hardlinks share their target's inode.
import { FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../errdefs/errors.js";
import { cleanPath, isOpaqueMarker, type EntryAttributes, type LayerEntry } from "./layer-index.js";
import { SMALL_FILE_BYTES } from "./speculative-fetches.js";

/** Entry attributes as read from tar or a TOC, plus the format's content locator. */
export interface EntryInput<T> extends EntryAttributes {
  /** Where a regular file's bytes are; undefined for other types. */
  content: T | undefined;
}

interface Node<T> {
  input: EntryAttributes;
  /** A parent directory the archive has no entry for (0755 root:root). */
  implied: boolean;
  content: T | undefined;
  children: Map<string, Node<T>> | undefined;
  entry: LayerEntry | undefined;
  ino: number;
  links: number;
  target: Node<T> | undefined;
}

const implicitDir = (path: string): EntryAttributes => ({
  path, type: "dir", mode: 0o755, uid: 0, gid: 0, uname: "", gname: "", size: 0, mtime: 0,
  linkname: "", devmajor: 0, devminor: 0, xattrs: {},
});

/**
 * `I` is what the format's entries look like; `contentOf` finds a regular
 * file's content locator in one, so a format's own records need no copying
 * into another shape.
 */
export class EntryTree<T, I extends EntryAttributes = EntryInput<T>> {
  readonly #nodes = new Map<string, Node<T>>();
  readonly #root: Node<T>;
  #nextIno = 1;

  constructor(inputs: Iterable<I>, contentOf: (input: I) => T | undefined) {
    this.#root = this.#newNode(implicitDir(""), undefined, true);
    this.#nodes.set("", this.#root);
    for (const raw of inputs) {
      const path = cleanPath(raw.path);
      // copying every entry doubled the load time of big layers
      this.#add(path === raw.path ? raw : { ...raw, path }, raw.type === "file" ? contentOf(raw) : undefined);
    }
    for (const node of this.#nodes.values()) this.#link(node);
    for (const node of this.#nodes.values()) node.entry = this.#finish(node);
  }

  get(path: string): LayerEntry | undefined {
    return this.#nodes.get(cleanPath(path))?.entry;
  }

  /** The record the entry at `path` was read from (undefined for a directory the archive only implies). */
  record(path: string): EntryAttributes | undefined {
    const node = this.#nodes.get(cleanPath(path));
    return node?.implied ? undefined : node?.input;
  }

  child(parentPath: string, name: string): LayerEntry | undefined {
    return this.#nodes.get(cleanPath(parentPath))?.children?.get(name)?.entry;
  }

  /** A directory's entries for LayerIndex.readdir; errors name the layer. */
  readdir(path: string, layerDigest: string): readonly LayerEntry[] {
    const children = this.children(path);
    if (children) return children;
    if (this.get(path)) throw new FailedPreconditionError(`layer ${layerDigest}: ${path} is not a directory`);
    throw new NotFoundError(`layer ${layerDigest}: ${path} not found`);
  }

  /** Children in layer order, or undefined if `path` is not a directory. */
  children(path: string): LayerEntry[] | undefined {
    const node = this.#nodes.get(cleanPath(path));
    if (!node?.children) return undefined;
    return [...node.children.values()].map((n) => n.entry as LayerEntry);
  }

  *all(): Iterable<LayerEntry> {
    for (const node of this.#nodes.values()) yield node.entry as LayerEntry;
  }

  /** The regular file behind `path` (following hardlinks) with its content locator. */
  content(path: string): { entry: LayerEntry; content: T | undefined } | undefined {
    let node = this.#nodes.get(cleanPath(path));
    if (node?.target) node = node.target;
    if (!node || node.input.type !== "file") return undefined;
    return { entry: node.entry as LayerEntry, content: node.content };
  }

  #newNode(input: EntryAttributes, content: T | undefined, implied = false): Node<T> {
    return {
      input,
      implied,
      content,
      children: input.type === "dir" ? new Map() : undefined,
      entry: undefined,
      ino: this.#nextIno++,
      links: 1,
      target: undefined,
    };
  }

  #add(input: EntryAttributes, content: T | undefined): void {
    if (input.path === "") {
      if (input.type === "dir") {
        this.#root.input = input;
        this.#root.implied = false;
      }
      return;
    }
    const slash = input.path.lastIndexOf("/");
    const parent = this.#dir(slash < 0 ? "" : input.path.slice(0, slash));
    const name = input.path.slice(slash + 1);
    const old = this.#nodes.get(input.path);
    if (old && old.input.type === "dir" && input.type === "dir") {
      old.input = input; // re-stating a directory changes attributes, keeps contents
      old.implied = false;
      return;
    }
    if (old) this.#forget(old);
    const node = this.#newNode(input, content);
    this.#nodes.set(input.path, node);
    parent.children?.set(name, node);
  }

  /** The directory node at `path`, created (with parents) if missing. */
  #dir(path: string): Node<T> {
    const existing = this.#nodes.get(path);
    if (existing?.children) return existing;
    this.#add(implicitDir(path), undefined);
    const node = this.#nodes.get(path) as Node<T>;
    node.implied = true;
    return node;
  }

  #forget(node: Node<T>): void {
    this.#nodes.delete(node.input.path);
    for (const child of node.children?.values() ?? []) this.#forget(child);
  }

  #link(node: Node<T>): void {
    if (node.input.type !== "hardlink") return;
    const seen = new Set<Node<T>>([node]);
    let target = this.#nodes.get(cleanPath(node.input.linkname));
    while (target?.input.type === "hardlink" && !seen.has(target)) {
      seen.add(target);
      target = this.#nodes.get(cleanPath(target.input.linkname));
    }
    if (!target || target.input.type === "hardlink" || target.input.type === "dir") {
      throw new InvalidArgumentError(`hardlink ${node.input.path} -> ${node.input.linkname}: target is not in this layer`);
    }
    node.target = target;
    target.links++;
  }

  #finish(node: Node<T>): LayerEntry {
    const i = node.input;
    const inode = node.target ?? node;
    let nlink = inode.links;
    if (node.children) nlink = 2 + [...node.children.values()].filter((c) => c.children).length;
    return Object.freeze({
      path: i.path, type: i.type, mode: i.mode & 0o7777, uid: i.uid, gid: i.gid, uname: i.uname, gname: i.gname,
      size: node.target ? node.target.input.size : i.size,
      mtime: i.mtime, linkname: i.type === "hardlink" ? cleanPath(i.linkname) : i.linkname,
      devmajor: i.devmajor, devminor: i.devminor, xattrs: Object.freeze({ ...i.xattrs }),
      ino: inode.ino, nlink,
    });
  }
}

/** Files a read makes worth fetching before they are asked for (speculative-fetches.ts). */
export interface AheadOfRead {
  /** The file read has not been read before: fetch its rest. */
  rest: boolean;
  /** The first read of a small file in its directory: the directory's other small files, nearest in layer order first. */
  siblings: string[];
}

/** The tree half of every LayerIndex; each format adds its verified file reads. */
export abstract class TreeLayerIndex<T> {
  readonly #filesBegun = new Set<string>();
  readonly #dirsBegun = new Set<string>();
  #hasXattrs: boolean | undefined;

  protected constructor(
    readonly digest: string,
    protected readonly tree: EntryTree<T>,
  ) {}

  getAttr(path: string): LayerEntry | undefined {
    return this.tree.get(path);
  }

  lookup(parentPath: string, name: string): LayerEntry | undefined {
    return this.tree.child(parentPath, name);
  }

  readdir(path: string): readonly LayerEntry[] {
    return this.tree.readdir(path, this.digest);
  }

  entries(): Iterable<LayerEntry> {
    return this.tree.all();
  }

  /** Whether any entry carries extended attributes or marks a directory opaque (worked out once). */
  get hasXattrs(): boolean {
    if (this.#hasXattrs === undefined) {
      this.#hasXattrs = false;
      for (const e of this.tree.all()) {
        if (Object.keys(e.xattrs).length > 0 || isOpaqueMarker(e.path.slice(e.path.lastIndexOf("/") + 1))) {
          this.#hasXattrs = true;
          break;
        }
      }
    }
    return this.#hasXattrs;
  }

  /** What a read of `path` makes worth fetching ahead; each file and directory counts once. */
  protected aheadOf(path: string): AheadOfRead {
    const rest = !this.#filesBegun.has(path);
    if (rest) this.#filesBegun.add(path);
    const slash = path.lastIndexOf("/");
    const dir = slash < 0 ? "" : path.slice(0, slash);
    const small = (e: LayerEntry | undefined): boolean => e !== undefined && e.size > 0 && e.size <= SMALL_FILE_BYTES;
    if (this.#dirsBegun.has(dir) || !small(this.tree.content(path)?.entry)) return { rest, siblings: [] };
    this.#dirsBegun.add(dir);
    const children = this.tree.children(dir) ?? [];
    const at = children.findIndex((c) => c.path === path);
    const siblings = children
      .map((entry, i) => ({ entry, distance: Math.abs(i - at) }))
      .filter(({ entry }) => entry.type === "file" && small(entry) && entry.path !== path)
      .sort((a, b) => a.distance - b.distance)
      .map(({ entry }) => entry.path);
    return { rest, siblings };
  }
}
