// Error kinds shared by every augur module, after containerd's errdefs package.
// Each kind is a class with a stable `code`; context travels in the message and
// `{ cause }`. The gRPC layer maps them to status codes in one place (grpc.ts).

export type ErrorCode =
  | "ERR_NOT_FOUND"
  | "ERR_ALREADY_EXISTS"
  | "ERR_FAILED_PRECONDITION"
  | "ERR_INVALID_ARGUMENT"
  | "ERR_UNAVAILABLE"
  | "ERR_NOT_IMPLEMENTED"
  | "ERR_INTERNAL";

export abstract class AugurError extends Error {
  abstract readonly code: ErrorCode;
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class NotFoundError extends AugurError {
  readonly code = "ERR_NOT_FOUND";
}
export class AlreadyExistsError extends AugurError {
  readonly code = "ERR_ALREADY_EXISTS";
}
export class FailedPreconditionError extends AugurError {
  readonly code = "ERR_FAILED_PRECONDITION";
}
export class InvalidArgumentError extends AugurError {
  readonly code = "ERR_INVALID_ARGUMENT";
}
export class UnavailableError extends AugurError {
  readonly code = "ERR_UNAVAILABLE";
}
export class NotImplementedError extends AugurError {
  readonly code = "ERR_NOT_IMPLEMENTED";
}
export class InternalError extends AugurError {
  readonly code = "ERR_INTERNAL";
}

const hasCode = (err: unknown, code: ErrorCode): boolean =>
  err instanceof AugurError && err.code === code;

export const isNotFound = (err: unknown): boolean => hasCode(err, "ERR_NOT_FOUND");
export const isAlreadyExists = (err: unknown): boolean => hasCode(err, "ERR_ALREADY_EXISTS");
export const isFailedPrecondition = (err: unknown): boolean => hasCode(err, "ERR_FAILED_PRECONDITION");
export const isInvalidArgument = (err: unknown): boolean => hasCode(err, "ERR_INVALID_ARGUMENT");
export const isUnavailable = (err: unknown): boolean => hasCode(err, "ERR_UNAVAILABLE");

/** Message of any thrown value, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
