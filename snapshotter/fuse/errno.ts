// The one place where a failure inside a FUSE handler becomes an errno. The
// kernel only understands errnos, so every handler ends here; failures a user
// should never see (a layer that fails verification, a registry that cannot be
// reached, a bug) become EIO with one log line naming the layer and the path.
import { constants } from "node:os";
import { errorMessage, isFailedPrecondition, isNotFound, isUnavailable } from "../errdefs/errors.js";
import { LayerVerificationError } from "../fetch/verification.js";
import type { Logger } from "../util/logging.js";

/** Negative errnos, as fuse-native answers them. */
export const Errno = {
  ENOENT: -constants.errno.ENOENT,
  EIO: -constants.errno.EIO,
  ENOTDIR: -constants.errno.ENOTDIR,
  EINVAL: -constants.errno.EINVAL,
  EROFS: -constants.errno.EROFS,
  ERANGE: -constants.errno.ERANGE,
  ENODATA: -constants.errno.ENODATA,
  ENOSYS: -constants.errno.ENOSYS,
} as const;

export interface FailedOp {
  readonly op: string;
  /** Layer-relative path the operation was about. */
  readonly path: string;
  readonly layer: string;
}

export function errnoFor(err: unknown, at: FailedOp, log: Logger): number {
  if (isNotFound(err)) return Errno.ENOENT;
  // LayerView raises FailedPrecondition for "not a directory" (readdir) and "not a regular file" (read)
  if (isFailedPrecondition(err)) return at.op === "readdir" ? Errno.ENOTDIR : Errno.EINVAL;
  const fields = { layer: at.layer, path: at.path, op: at.op, err: errorMessage(err) };
  if (err instanceof LayerVerificationError) {
    log.error("layer failed verification; not served", { ...fields, layer: err.layerDigest });
  } else if (isUnavailable(err)) {
    log.error("layer unavailable", fields);
  } else {
    log.error("operation failed", fields);
  }
  return Errno.EIO;
}
