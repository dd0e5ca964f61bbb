// scripts/test.sh's counting, on a real vitest report: a file whose
// beforeAll throws leaves its tests "skipped" and must count as a failure;
// skipped tests are named; passes are counted once.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { countReport } from "../../../scripts/test-report.js";

const dir = mkdtempSync(join(tmpdir(), "augur-report-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function vitestReport(files: Record<string, string>): { testResults?: [] } {
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  writeFileSync(join(dir, "vitest.config.mjs"), "export default {}\n");
  const out = join(dir, "report.json");
  try {
    execFileSync(join(process.cwd(), "node_modules", ".bin", "vitest"), ["run", "--root", dir, "--reporter=json", `--outputFile=${out}`], { stdio: "ignore" });
  } catch {
    // vitest exits 1 when anything failed: the report is what is counted
  }
  return JSON.parse(readFileSync(out, "utf8")) as { testResults?: [] };
}

describe("test report counting", () => {
  it("counts a file whose beforeAll threw as failed, names skipped tests, and counts passes", () => {
    const report = vitestReport({
      "hook.test.ts": `import { beforeAll, it, expect } from "vitest";\nbeforeAll(() => { throw new Error("setup broke"); });\nit("never runs", () => { expect(1).toBe(1); });\n`,
      "ok.test.ts": `import { it, expect } from "vitest";\nit("runs", () => { expect(1).toBe(1); });\nit.skip("is skipped", () => {});\n`,
      "bad.test.ts": `import { it, expect } from "vitest";\nit("fails", () => { expect(1).toBe(2); });\n`,
    });
    const counts = countReport(report, dir);
    expect(counts.passed).toBe(1);
    // bad.test.ts's failed test, and hook.test.ts as a file
    expect(counts.failed).toBe(2);
    expect(counts.brokenFiles).toEqual(["hook.test.ts: setup broke"]);
    expect(counts.skipped.sort()).toEqual(["hook.test.ts > never runs (skipped)", "ok.test.ts > is skipped (skipped)"]);
  }, 60_000);

  it("counts a file that does not load as failed", () => {
    const counts = countReport({ testResults: [{ name: `${dir}/x.test.ts`, status: "failed", message: "SyntaxError: nope\nat line 1", assertionResults: [] }] }, dir);
    expect(counts).toEqual({ passed: 0, failed: 1, skipped: [], brokenFiles: ["x.test.ts: SyntaxError: nope"] });
  });
});
