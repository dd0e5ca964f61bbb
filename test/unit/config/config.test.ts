import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DEFAULT_ROOT, DEFAULT_SOCKET, loadConfig } from "../../../snapshotter/config/config.js";

const dirs: string[] = [];
afterAll(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const file = (text: string): string => {
  const dir = mkdtempSync(join(tmpdir(), "augur-cfg-"));
  dirs.push(dir);
  const p = join(dir, "augur.toml");
  writeFileSync(p, text);
  return p;
};

describe("loadConfig", () => {
  it("defaults keep everything under the root", () => {
    expect(loadConfig({})).toEqual({ root: DEFAULT_ROOT, socket: DEFAULT_SOCKET, api: `${DEFAULT_ROOT}/api.sock` });
    expect(loadConfig({ root: "/x" }).api).toBe("/x/api.sock");
  });
  it("flags override the file, the file overrides defaults", () => {
    const f = file('root = "/from-file"\napi = "127.0.0.1:9000"\n');
    expect(loadConfig({}, f)).toEqual({ root: "/from-file", socket: DEFAULT_SOCKET, api: "127.0.0.1:9000" });
    expect(loadConfig({ root: "/flag", api: "/a.sock" }, f)).toEqual({ root: "/flag", socket: DEFAULT_SOCKET, api: "/a.sock" });
  });
  it("names what is wrong in a bad file", () => {
    expect(() => loadConfig({}, file("root = ["))).toThrow(/cannot read config file/);
    expect(() => loadConfig({}, file('rooot = "/x"'))).toThrow(/unknown setting "rooot"/);
    expect(() => loadConfig({}, file("root = 3"))).toThrow(/root must be a non-empty string/);
    expect(() => loadConfig({}, "/nonexistent/augur.toml")).toThrow(/cannot read config file \/nonexistent/);
  });
});
