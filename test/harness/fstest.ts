// A port of continuity's fstest: appliers that change a directory, and a deep
// comparison of two directory trees (type, mode, owner, content, link target).
import { chmodSync, chownSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export type Applier = (root: string) => void;

export const apply =
  (...appliers: Applier[]): Applier =>
  (root) => {
    for (const a of appliers) a(root);
  };
export const createFile =
  (path: string, content: string, mode: number): Applier =>
  (root) => {
    writeFileSync(join(root, path), content);
    chmodSync(join(root, path), mode);
  };
export const createDir =
  (path: string, mode: number): Applier =>
  (root) => {
    mkdirSync(join(root, path), { recursive: true });
    chmodSync(join(root, path), mode);
  };
export const removeAll =
  (path: string): Applier =>
  (root) =>
    rmSync(join(root, path), { recursive: true, force: true });
export const chown =
  (path: string, uid: number, gid: number): Applier =>
  (root) =>
    chownSync(join(root, path), uid, gid);
export const link =
  (oldPath: string, newPath: string): Applier =>
  (root) =>
    linkSync(join(root, oldPath), join(root, newPath));
export const symlink =
  (target: string, path: string): Applier =>
  (root) =>
    symlinkSync(target, join(root, path));
export const rename =
  (from: string, to: string): Applier =>
  (root) =>
    renameSync(join(root, from), join(root, to));

interface Node {
  kind: string;
  mode: number;
  uid: number;
  gid: number;
  content?: string;
  target?: string;
}

function describeTree(root: string): Map<string, Node> {
  const out = new Map<string, Node>();
  const walk = (rel: string): void => {
    const abs = join(root, rel);
    const st = lstatSync(abs);
    const node: Node = { kind: st.isDirectory() ? "dir" : st.isSymbolicLink() ? "symlink" : st.isFile() ? "file" : "other", mode: st.mode & 0o7777, uid: st.uid, gid: st.gid };
    if (st.isFile()) node.content = readFileSync(abs, "utf8");
    if (st.isSymbolicLink()) node.target = readlinkSync(abs);
    out.set(rel || "/", node);
    if (st.isDirectory()) for (const name of readdirSync(abs).sort()) walk(join(rel || "/", name));
  };
  walk("");
  return out;
}

/** Throws an error listing every difference between the trees at `a` and `b` (root mode ignored, as fstest does). */
export function checkDirectoryEqual(a: string, b: string): void {
  const ta = describeTree(a);
  const tb = describeTree(b);
  const diffs: string[] = [];
  for (const [p, na] of ta) {
    const nb = tb.get(p);
    if (!nb) diffs.push(`${p}: only in ${a}`);
    else if (p !== "/" && JSON.stringify(na) !== JSON.stringify(nb)) diffs.push(`${p}: ${JSON.stringify(na)} != ${JSON.stringify(nb)}`);
  }
  for (const p of tb.keys()) if (!ta.has(p)) diffs.push(`${p}: only in ${b}`);
  if (diffs.length > 0) throw new Error(`directories differ:\n${diffs.slice(0, 20).join("\n")}`);
}
