import { describe, expect, it } from "vitest";
import { cleanPath } from "../../../snapshotter/layer/layer-index.js";

describe("cleanPath", () => {
  it("names entries the way lookups do, whatever form the tar used", () => {
    const cases: [string, string][] = [
      ["usr/bin/python3", "usr/bin/python3"], ["./usr/bin/python3", "usr/bin/python3"], ["./", ""], [".", ""], ["", ""],
      ["./usr/lib/", "usr/lib"], ["/etc//passwd", "etc/passwd"], ["./a/./b/../c", "a/c"], ["./..", ""], ["a/..b", "a/..b"],
    ];
    for (const [raw, clean] of cases) expect(cleanPath(raw), raw).toBe(clean);
  });
});
