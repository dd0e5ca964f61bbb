// The one place an error becomes an HTTP status: errdefs kinds as containerd's
// errdefs/http does, a body over its limit as 413. Bad input is always a 4xx
// that names the problem; only a bug is a 500.
import { AugurError, errorMessage } from "../errdefs/errors.js";

/** A request body larger than the endpoint takes. */
export class PayloadTooLargeError extends Error {
  constructor(readonly limit: number) {
    super(`request body is larger than ${limit} bytes`);
  }
}

const BY_CODE: Record<string, number> = {
  ERR_NOT_FOUND: 404,
  ERR_ALREADY_EXISTS: 409,
  ERR_FAILED_PRECONDITION: 409,
  ERR_INVALID_ARGUMENT: 400,
  ERR_UNAVAILABLE: 503,
  ERR_NOT_IMPLEMENTED: 501,
  ERR_INTERNAL: 500,
};

export function httpStatusOf(err: unknown): number {
  if (err instanceof PayloadTooLargeError) return 413;
  if (err instanceof AugurError) return BY_CODE[err.code] ?? 500;
  return 500;
}

export const errorBody = (err: unknown): { error: string } => ({ error: errorMessage(err) });
