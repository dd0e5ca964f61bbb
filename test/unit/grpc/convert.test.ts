import { describe, expect, it } from "vitest";
import { fromInfo, fromTimestamp, toInfo, toTimestamp } from "../../../snapshotter/grpc/convert.js";
import { toGrpcError } from "../../../snapshotter/errdefs/grpc.js";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../../../snapshotter/errdefs/errors.js";
import { status } from "@grpc/grpc-js";

describe("wire conversions", () => {
  it("round-trips timestamps at nanosecond precision", () => {
    const ns = 1795482123_456789123n; // 2026-11-24T01:02:03.456789123Z
    expect(toTimestamp(ns)).toEqual({ seconds: 1795482123, nanos: 456_789_123 });
    expect(fromTimestamp(toTimestamp(ns))).toBe(ns);
    expect(toTimestamp(-1n)).toEqual({ seconds: -1, nanos: 999_999_999 });
    expect(fromTimestamp(null)).toBe(0n);
  });

  it("round-trips Info with kinds as containerd's enum", () => {
    const info = { name: "n", parent: "p", kind: "committed" as const, created: 1_000_000_001n, updated: 2_000_000_002n, labels: { a: "b" } };
    const pb = fromInfo(info);
    expect(pb.kind).toBe("COMMITTED");
    expect(toInfo(pb)).toEqual(info);
  });

  it("rejects a request without info", () => {
    expect(() => toInfo(null)).toThrow(InvalidArgumentError);
  });

  it("maps error kinds to the gRPC codes containerd's errdefs expects", () => {
    expect(toGrpcError(new NotFoundError("x")).code).toBe(status.NOT_FOUND);
    expect(toGrpcError(new AlreadyExistsError("x")).code).toBe(status.ALREADY_EXISTS);
    expect(toGrpcError(new FailedPreconditionError("x")).code).toBe(status.FAILED_PRECONDITION);
    expect(toGrpcError(new InvalidArgumentError("x")).code).toBe(status.INVALID_ARGUMENT);
    expect(toGrpcError(new Error("boom"))).toMatchObject({ code: status.UNKNOWN, details: "boom" });
  });
});
