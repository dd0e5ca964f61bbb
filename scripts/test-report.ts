// Reads vitest's JSON report and prints what scripts/test.sh counts: every
// test that passed or failed, every file that failed without a failed test
// to show for it (it did not load, or a beforeAll/afterAll hook threw, which
// leaves its tests "skipped"), and every skipped test by name, so nothing
// that did not run is taken for a pass.
// Usage: node dist/scripts/test-report.js REPORT.json  → its last line is "PASSED FAILED SKIPPED".
import { readFileSync } from "node:fs";

interface AssertionResult {
  status: string;
  title: string;
  ancestorTitles?: string[];
}
interface FileResult {
  name?: string;
  status?: string;
  message?: string;
  assertionResults?: AssertionResult[];
}

export interface TestCounts {
  passed: number;
  failed: number;
  skipped: string[];
  /** Lines naming each failed file that no failed test explains. */
  brokenFiles: string[];
}

export function countReport(report: { testResults?: FileResult[] }, cwd = process.cwd()): TestCounts {
  const out: TestCounts = { passed: 0, failed: 0, skipped: [], brokenFiles: [] };
  for (const file of report.testResults ?? []) {
    const name = (file.name ?? "?").replace(`${cwd}/`, "");
    let fileFailed = 0;
    for (const t of file.assertionResults ?? []) {
      if (t.status === "passed") out.passed++;
      else if (t.status === "failed") {
        out.failed++;
        fileFailed++;
      } else out.skipped.push(`${name} > ${[...(t.ancestorTitles ?? []), t.title].join(" > ")} (${t.status})`);
    }
    if (file.status === "failed" && fileFailed === 0) {
      out.failed++;
      out.brokenFiles.push(`${name}: ${String(file.message ?? "").split("\n")[0] || "no message"}`);
    }
  }
  return out;
}

if (process.argv[1]?.endsWith("test-report.js")) {
  let counts: TestCounts;
  try {
    counts = countReport(JSON.parse(readFileSync(process.argv[2] ?? "", "utf8")) as { testResults?: FileResult[] });
  } catch (err) {
    console.log(`vitest wrote no readable report (${err instanceof Error ? err.message : String(err)})`);
    counts = { passed: 0, failed: 1, skipped: [], brokenFiles: [] };
  }
  for (const f of counts.brokenFiles) console.log(`FAILED file ${f}`);
  for (const s of counts.skipped) console.log(`skipped: ${s}`);
  console.log(`${counts.passed} ${counts.failed} ${counts.skipped.length}`);
}
