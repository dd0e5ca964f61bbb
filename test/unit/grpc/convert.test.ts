import { describe, expect, it } from "vitest";
import { fromInfo, fromTimestamp, toInfo, toTimestamp } from "../../../snapshotter/grpc/convert.js";
import { toGrpcError } from "../../../snapshotter/errdefs/grpc.js";
import { AlreadyExistsError, FailedPreconditionError, InvalidArgumentError, NotFoundError } from "../../../snapshotter/errdefs/errors.js";
import { status } from "@grpc/grpc-js";

describe("wire conversions", () => {
  it("round-trips timestamps at millisecond precision", () => {
    const d = new Date("2026-11-24T01:02:03.456Z");
    expect(toTimestamp(d)).toEqual({ seconds: 1795482123, nanos: 456_000_000 });
    expect(fromTimestamp(toTimestamp(d)).getTime()).toBe(d.getTime());
  });

  it("round-trips Info with kinds as containerd's enum", () => {
    const info = { name: "n", parent: "p", kind: "committed" as const, created: new Date(1000), updated: new Date(2000), labels: { a: "b" } };
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
