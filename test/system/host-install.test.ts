// Installing augur on a host (scripts/install.sh --system, here its second half
// scripts/host/install-host.sh on the already built checkout) into a scratch
// prefix: `augur` on PATH, a unit systemd-analyze accepts, the default config,
// readiness through `augur ready`, containerd finding the installed augur, and
// an uninstall that keeps the config.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { REPO } from "../harness/augur.js";
import { startContainerd, type Containerd } from "../harness/containerd.js";
import { canConnect, removeScratch, run, runOk, scratchDir, startProcess, type Proc } from "../harness/processes.js";

let dir: string;
let prefix: string;
let unitDir: string;
let configDir: string;
let serve: Proc | undefined;
let containerd: Containerd | undefined;
const version = (JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { version: string }).version;
const install = (...args: string[]) => run("bash", [join(REPO, "scripts/host/install-host.sh"), "--system", "--prefix", prefix, "--unit-dir", unitDir, "--config-dir", configDir, ...args], { timeoutMs: 120_000 });
const onPath = (...args: string[]) => run("env", [`PATH=${join(prefix, "bin")}:/usr/sbin:/usr/bin:/sbin:/bin`, "augur", ...args], { timeoutMs: 60_000 });

beforeAll(async () => {
  dir = scratchDir("as-host-");
  prefix = join(dir, "usr");
  unitDir = join(dir, "etc/systemd/system");
  configDir = join(dir, "etc/augur");
  const r = await install();
  if (r.code !== 0) throw new Error(`install-host.sh exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
});

afterAll(async () => {
  await containerd?.stop();
  await serve?.stop();
  await removeScratch(dir);
});

describe("augur installed for a host", () => {
  it("puts augur on PATH, running the installed copy", async () => {
    const r = await onPath("--version");
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe(`augur ${version}`);
    expect(readFileSync(join(prefix, "bin/augur"), "utf8")).toContain(join(prefix, "lib/augur/dist/snapshotter/cli/main.js"));
    // only what the program needs: no test runner, no compiler
    expect(existsSync(join(prefix, "lib/augur/node_modules/better-sqlite3"))).toBe(true);
    expect(existsSync(join(prefix, "lib/augur/node_modules/vitest"))).toBe(false);
    expect(existsSync(join(prefix, "lib/augur/node_modules/typescript"))).toBe(false);
  });

  it("installs a unit systemd-analyze verify accepts, ordered before containerd, restarting, stopped by SIGTERM", async () => {
    const unit = join(unitDir, "augur.service");
    const v = await run("systemd-analyze", ["verify", unit]);
    expect(v.stderr + v.stdout).toBe("");
    expect(v.code).toBe(0);
    const text = readFileSync(unit, "utf8");
    expect(text).not.toContain("@");
    const line = (k: string) => text.split("\n").filter((l) => l.startsWith(`${k}=`)).map((l) => l.slice(k.length + 1));
    expect(line("Before")).toEqual(["containerd.service"]);
    expect(line("Restart")).toEqual(["on-failure"]);
    expect(line("KillSignal")).toEqual(["SIGTERM"]);
    expect(line("Type")).toEqual(["exec"]);
    expect(line("ExecStart")).toEqual([`${process.execPath} ${prefix}/lib/augur/dist/snapshotter/cli/main.js serve --config ${configDir}/config.toml`]);
    expect(line("ExecStartPost")[0]).toContain(" ready --config ");
  });

  it("installs the commented default config, and keeps an edited one on reinstall", async () => {
    const config = join(configDir, "config.toml");
    expect(readFileSync(config, "utf8")).toBe(readFileSync(join(REPO, "scripts/host/config.toml"), "utf8"));
    const edited = "# mine\ncache_size = \"1GiB\"\n";
    await runOk("sh", ["-c", `printf '%s' '${edited}' > ${config}`]);
    const r = await install();
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`kept ${config}`);
    expect(readFileSync(config, "utf8")).toBe(edited);
    expect((await onPath("--version")).stdout.trim()).toBe(`augur ${version}`);
  });

  it("augur ready waits for serve; containerd lists the installed augur as its snapshotter", async () => {
    const root = join(dir, "root");
    const socket = join(dir, "augur.sock");
    const config = join(configDir, "config.toml");
    const ready = onPath("ready", "--config", config, "--root", root, "--timeout", "60");
    serve = startProcess(join(prefix, "bin/augur"), ["serve", "--config", config, "--root", root, "--socket", socket, "--containerd-address", join(dir, "containerd.sock")], join(dir, "augur.log"));
    const r = await ready;
    expect(r.stderr).toBe("");
    expect(r.stdout).toContain("augur is ready");
    expect(await canConnect(socket)).toBe(true);
    containerd = await startContainerd(dir, socket);
    const plugins = await containerd.ctrOk(["plugins", "ls"]);
    expect(plugins).toMatch(/io\.containerd\.snapshotter\.v1\s+augur\s+-\s+ok/);
    await containerd.stop();
    containerd = undefined;
    expect(await serve.stop("SIGTERM")).toBe(0);
    serve = undefined;
    const late = await onPath("ready", "--root", root, "--timeout", "1");
    expect(late.code).toBe(1);
    expect(late.stderr).toContain("did not become ready within 1s");
  });

  it("uninstalls program, wrapper and unit, keeping the config", async () => {
    const r = await install("--uninstall");
    expect(r.code).toBe(0);
    expect(existsSync(join(prefix, "bin/augur"))).toBe(false);
    expect(existsSync(join(prefix, "lib/augur"))).toBe(false);
    expect(existsSync(join(unitDir, "augur.service"))).toBe(false);
    expect(existsSync(join(configDir, "config.toml"))).toBe(true);
  });
});
