import { describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { predictCommand, readTraces } from "../../../snapshotter/predict/predict-command.js";

const traces = join(import.meta.dirname, "..", "..", "..", "docs", "traces");

describe("augur predict eval", () => {
  it("evaluates the committed traces with the chosen predictors and prints the table", async () => {
    expect(readTraces(traces).length).toBe(28);
    let out = "";
    await predictCommand(["eval", "--traces", traces, "--predictors", "replay,frequency"], (s) => (out += s));
    expect(out).toContain("28 traces; a query every 1 first touch(es), at most 64 files each");
    const rows = out.split("\n").filter((l) => l.startsWith("| replay |") || l.startsWith("| frequency |"));
    expect(rows).toHaveLength(6);
    const laterRuns = rows.find((l) => l.startsWith("| replay | later-runs |"))?.split("|").map((c) => c.trim());
    expect(Number(laterRuns?.[4]?.replace("%", ""))).toBeGreaterThanOrEqual(90); // precision
    expect(Number(laterRuns?.[5]?.replace("%", ""))).toBeGreaterThanOrEqual(90); // recall
    expect(out).not.toContain("no layer catalog");
  }, 60_000);

  it("names what is wrong: an unknown predictor, an unreadable directory, too few traces, a bad option", async () => {
    await expect(predictCommand(["eval", "--traces", traces, "--predictors", "oracle"])).rejects.toThrow(/unknown predictor "oracle" \(known: replay, frequency, markov, locality, gru\)/);
    await expect(predictCommand(["eval", "--traces", "/nonexistent/traces"])).rejects.toThrow(/cannot read traces from \/nonexistent\/traces/);
    const dir = mkdtempSync(join(tmpdir(), "augur-eval-"));
    try {
      await expect(predictCommand(["eval", "--traces", dir])).rejects.toThrow(/holds 0 trace\(s\); an evaluation needs at least two/);
      writeFileSync(join(dir, "x.jsonl"), "not json\n");
      await expect(predictCommand(["eval", "--traces", dir])).rejects.toThrow(/not an augur trace \(no header line\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    await expect(predictCommand(["eval", "--traces", traces, "--limit", "0"])).rejects.toThrow(/--limit "0" is not a whole number of at least 1/);
    await expect(predictCommand(["guess"])).rejects.toThrow(/unknown predict command "guess"; use eval/);
  });
});
