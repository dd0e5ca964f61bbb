// FUSE operation handlers for one layer. Every handler answers exactly once:
// the result, or the errno errnoFor chooses for whatever it threw. The layer is
// read-only: opening for writing and every mutating operation answer EROFS (the
// mount is also `ro`, so the kernel normally answers those before asking us).
import { constants } from "node:fs";
import type Fuse from "fuse-native";
import type { Logger } from "../util/logging.js";
import { layerStatfs, statOf } from "./entry-stat.js";
import { Errno, errnoFor } from "./errno.js";
import { fuseCaller } from "./layer-fuse.js";
import type { LayerPresentation } from "./layer-presentation.js";

/** One request the kernel made of the layer, for access tracing. */
export interface LayerAccess {
  op: "lookup" | "open" | "read" | "readdir";
  /** Layer-relative path ("" is the root). */
  path: string;
  offset?: number;
  length?: number;
  /** Opens: the file's size. */
  size?: number;
  /** The process that made the request, when the FUSE addon can tell (layer-fuse.ts). */
  pid?: number;
  /** When the kernel asked (performance.now()). */
  at: number;
}

export type AccessObserver = (e: LayerAccess) => void;

const { O_RDONLY, O_TRUNC } = constants;
/** The access-mode bits of open flags (Linux; not in Node's fs.constants). */
const O_ACCMODE = 0o3;

/** Layer path of a FUSE path: "/a/b" -> "a/b", "/" -> "". */
const layerPath = (fusePath: string): string => fusePath.replace(/^\/+/, "");
const parentOf = (path: string): string => path.slice(0, Math.max(0, path.lastIndexOf("/")));

export function layerOperations(layer: LayerPresentation, log: Logger, onAccess?: AccessObserver): Fuse.Operations {
  /**
   * Tells the observer of a request. The caller's pid is only known during
   * the synchronous part of a handler, so it is taken here, first thing;
   * `size` (opens) may be worked out after the kernel has its answer.
   */
  const observe = (e: Omit<LayerAccess, "at" | "pid">, size?: () => Promise<number | undefined>): void => {
    if (!onAccess) return;
    const pid = fuseCaller();
    const at = performance.now();
    const emit = (n: number | undefined): void => {
      try {
        onAccess({ ...e, at, ...(pid === undefined ? {} : { pid }), ...(n === undefined ? {} : { size: n }) });
      } catch (err) {
        log.warn("access observer failed", { layer: layer.digest, err: String(err) });
      }
    };
    if (size) size().then(emit, () => emit(undefined));
    else emit(undefined);
  };
  /** Runs `work`; anything it throws becomes the errno answered through `fail`. */
  const guard = (op: string, fusePath: string, fail: (errno: number) => void, work: () => Promise<void>): void => {
    work().catch((err: unknown) => fail(errnoFor(err, { op, path: layerPath(fusePath), layer: layer.digest }, log)));
  };
  const shownStat = async (path: string): Promise<Fuse.Stat | undefined> => {
    const shown = await layer.resolve(path);
    return shown && statOf(shown);
  };
  const readOnly = (...args: unknown[]): void => {
    const cb = args.at(-1) as (errno: number) => void;
    cb(Errno.EROFS);
  };

  return {
    init: (cb) => cb(0),
    statfs: (_path, cb) => cb(0, layerStatfs()),

    getattr: (fusePath, cb) =>
      guard("lookup", fusePath, cb, async () => {
        const path = layerPath(fusePath);
        observe({ op: "lookup", path });
        const stat = await shownStat(path);
        if (stat) cb(0, stat);
        else cb(Errno.ENOENT);
      }),

    readdir: (fusePath, cb) =>
      guard("readdir", fusePath, cb, async () => {
        const path = layerPath(fusePath);
        observe({ op: "readdir", path });
        const [children, self, parent] = await Promise.all([layer.list(path), shownStat(path), shownStat(parentOf(path))]);
        if (!self || !parent) return cb(Errno.ENOENT);
        // stats give readdir its d_type and (with use_ino) d_ino
        cb(0, [".", "..", ...children.map((c) => c.name)], [self, parent, ...children.map((c) => statOf(c.shown))]);
      }),

    readlink: (fusePath, cb) =>
      guard("readlink", fusePath, cb, async () => {
        const shown = await layer.resolve(layerPath(fusePath));
        if (!shown) return cb(Errno.ENOENT);
        if (shown.whiteout || shown.entry.type !== "symlink") return cb(Errno.EINVAL);
        cb(0, shown.entry.linkname);
      }),

    open: (fusePath, flags, cb) =>
      guard("open", fusePath, cb, async () => {
        if ((flags & O_ACCMODE) !== O_RDONLY || (flags & O_TRUNC) !== 0) return cb(Errno.EROFS);
        const path = layerPath(fusePath);
        observe({ op: "open", path }, async () => (await layer.resolve(path))?.entry.size);
        cb(0, 0); // reads go by path: no per-open state
      }),

    read: (fusePath, _fd, buf, len, pos, cb) =>
      guard("read", fusePath, cb, async () => {
        const path = layerPath(fusePath);
        observe({ op: "read", path, offset: pos, length: len });
        const data = await layer.view.readFile(path, pos, len);
        // readFile never returns more than asked; clip anyway rather than overrun the kernel's buffer
        const n = Math.min(data.length, len, buf.length);
        data.copy(buf, 0, 0, n);
        cb(n);
      }),

    getxattr: (fusePath, name, _position, cb) =>
      guard("getxattr", fusePath, cb, async () => {
        // a layer without xattrs says so once: the kernel then stops asking this mount (no_getxattr)
        if (!(await layer.view.hasXattrs())) return cb(Errno.ENOSYS);
        const xattrs = await layer.xattrs(layerPath(fusePath));
        if (!xattrs) return cb(Errno.ENOENT);
        const value = Object.hasOwn(xattrs, name) ? xattrs[name] : undefined;
        if (value) cb(0, value);
        else cb(Errno.ENODATA);
      }),

    listxattr: (fusePath, cb) =>
      guard("listxattr", fusePath, cb, async () => {
        const xattrs = await layer.xattrs(layerPath(fusePath));
        if (!xattrs) return cb(Errno.ENOENT);
        cb(0, Object.keys(xattrs));
      }),

    write: (_p, _fd, _buf, _len, _pos, cb) => cb(Errno.EROFS),
    create: readOnly,
    truncate: readOnly,
    ftruncate: readOnly,
    utimens: readOnly,
    chown: readOnly,
    chmod: readOnly,
    mknod: readOnly,
    setxattr: readOnly,
    removexattr: readOnly,
    unlink: readOnly,
    rename: readOnly,
    link: readOnly,
    symlink: readOnly,
    mkdir: readOnly,
    rmdir: readOnly,
  };
}

/** Told how long each FUSE operation took augur to answer, in seconds. */
export type OperationTimer = (op: string, seconds: number) => void;

/** `ops` with every handler timed from its call to its answer (what a latency histogram shows). */
export function timedOperations(ops: Fuse.Operations, timer: OperationTimer): Fuse.Operations {
  const out: Record<string, (...args: unknown[]) => void> = {};
  for (const [op, handler] of Object.entries(ops) as [string, (...args: unknown[]) => void][]) {
    out[op] = (...args: unknown[]) => {
      const started = performance.now();
      const answer = args[args.length - 1] as (...result: unknown[]) => void;
      args[args.length - 1] = (...result: unknown[]): void => {
        timer(op, (performance.now() - started) / 1000);
        answer(...result);
      };
      handler(...args);
    };
  }
  return out;
}
