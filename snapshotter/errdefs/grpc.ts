// The one place where augur errors become gRPC statuses (containerd's errdefs.ToGRPC).
// containerd's proxy client maps these codes back to its own errdefs, so the
// codes, not the messages, are the contract.
import { status, type ServiceError, Metadata } from "@grpc/grpc-js";
import { AugurError, type ErrorCode, errorMessage } from "./errors.js";

const CODES: Record<ErrorCode, status> = {
  ERR_NOT_FOUND: status.NOT_FOUND,
  ERR_ALREADY_EXISTS: status.ALREADY_EXISTS,
  ERR_FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  ERR_INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  ERR_UNAVAILABLE: status.UNAVAILABLE,
  ERR_NOT_IMPLEMENTED: status.UNIMPLEMENTED,
  ERR_INTERNAL: status.INTERNAL,
};

export function toGrpcError(err: unknown): Partial<ServiceError> {
  const code = err instanceof AugurError ? CODES[err.code] : status.UNKNOWN;
  return { code, details: errorMessage(err), metadata: new Metadata() };
}
