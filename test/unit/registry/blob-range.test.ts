import { Readable } from "node:stream";
import { describe, it, expect } from "vitest";
import { isFailedPrecondition } from "../../../snapshotter/errdefs/errors.js";
import { SkipBytes, bytesToSkip, rangeHeader } from "../../../snapshotter/registry/blob-range.js";
import { uploadUrl } from "../../../snapshotter/registry/registry-client.js";

describe("blob ranges", () => {
  it("writes inclusive Range headers", () => {
    expect(rangeHeader(0, 1)).toBe("bytes=0-0");
    expect(rangeHeader(100, 50)).toBe("bytes=100-149");
    expect(rangeHeader(7)).toBe("bytes=7-");
  });

  it("skips nothing on a matching 206, the offset on a 200, and refuses a 206 at another offset", () => {
    expect(bytesToSkip(206, "bytes 100-149/1000", 100, "b")).toBe(0);
    expect(bytesToSkip(206, "bytes 100-149/*", 100, "b")).toBe(0);
    expect(bytesToSkip(200, undefined, 100, "b")).toBe(100);
    for (const header of ["bytes 0-49/1000", undefined, "garbage"]) {
      let err: unknown;
      try {
        bytesToSkip(206, header, 100, "blob x at h");
      } catch (e) {
        err = e;
      }
      expect(isFailedPrecondition(err)).toBe(true);
      expect((err as Error).message).toContain("blob x at h");
    }
  });

  it("SkipBytes drops a prefix spanning several chunks", async () => {
    const source = Readable.from([Buffer.from("abc"), Buffer.from("defg"), Buffer.from("hij")]);
    const out: Buffer[] = [];
    for await (const c of source.pipe(new SkipBytes(5))) out.push(c as Buffer);
    expect(Buffer.concat(out).toString()).toBe("fghij");
  });
});

describe("uploadUrl", () => {
  it("joins a relative or absolute Location with the digest, keeping the registry's query", () => {
    expect(uploadUrl("http://r:5000/v2", "/v2/a/blobs/uploads/u1?_state=x", "sha256:ab")).toBe("http://r:5000/v2/a/blobs/uploads/u1?_state=x&digest=sha256%3Aab");
    expect(uploadUrl("http://r:5000/v2", "https://s3.example/up?sig=1", "sha256:ab")).toBe("https://s3.example/up?sig=1&digest=sha256%3Aab");
  });
});
