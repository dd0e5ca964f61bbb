// The snapshotter contract, in containerd's terms (snapshots/snapshotter.go).
//
// - `key` names an active snapshot or a view: a writable (or read-only)
//   filesystem that is being prepared.
// - `name` names a committed snapshot: immutable, usable as a parent.
// - `parent` is always the name of a committed snapshot, or "" for none.
// Keys and names share one space per namespace: committing key K as name N
// removes K and creates N.

import type { UnixNanos } from "../util/wall-clock.js";

export type Kind = "view" | "active" | "committed";

export type Labels = Record<string, string>;

export interface Info {
  name: string;
  parent: string;
  kind: Kind;
  /** Nanoseconds since the Unix epoch, as containerd's time.Time (not truncated to milliseconds). */
  created: UnixNanos;
  updated: UnixNanos;
  labels: Labels;
}

export interface Usage {
  /** Bytes on disk used by this snapshot alone (not its parents). */
  size: number;
  inodes: number;
}

/** A mount as containerd's `types.Mount`: what to pass to mount(8) to get the filesystem. */
export interface Mount {
  type: string;
  source: string;
  target?: string;
  options: string[];
}

/**
 * Which snapshots an operation may see. containerd sends the namespace with
 * every call it makes for a client; its garbage collector walks and removes
 * snapshots without one, and then sees every namespace (containerd's own
 * backend keys already embed the namespace, so they do not collide).
 */
export type Scope = { namespace: string } | { namespace: undefined };

export interface Snapshotter {
  stat(scope: Scope, key: string): Promise<Info>;
  /** Replace mutable fields (labels) of `info.name`; `fieldPaths` as containerd sends them (e.g. `labels.x`). */
  update(scope: Scope, info: Info, fieldPaths: string[]): Promise<Info>;
  usage(scope: Scope, key: string): Promise<Usage>;
  mounts(scope: Scope, key: string): Promise<Mount[]>;
  prepare(scope: Scope, key: string, parent: string, labels: Labels): Promise<Mount[]>;
  view(scope: Scope, key: string, parent: string, labels: Labels): Promise<Mount[]>;
  commit(scope: Scope, name: string, key: string, labels: Labels): Promise<void>;
  remove(scope: Scope, key: string): Promise<void>;
  /** Every snapshot matching any of `filters` (containerd filter syntax; none = all). */
  walk(scope: Scope, filters: string[]): Promise<Info[]>;
  /** Remove on-disk state no snapshot refers to. */
  cleanup(scope: Scope): Promise<void>;
  close(): Promise<void>;
}
