// augur's version, from package.json: one directory further up when compiled
// into dist/ than when run from the sources (tests).
import { existsSync, readFileSync } from "node:fs";

export function augurVersion(): string {
  for (const rel of ["../../package.json", "../../../package.json"]) {
    const p = new URL(rel, import.meta.url);
    if (existsSync(p)) return (JSON.parse(readFileSync(p, "utf8")) as { version: string }).version;
  }
  return "unknown";
}
