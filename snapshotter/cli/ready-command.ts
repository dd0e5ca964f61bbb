// `augur ready`: waits until a starting `augur serve` answers /healthz on its
// HTTP API. The systemd unit runs it as ExecStartPost= (Type=exec), so the unit
// becomes active, and containerd (ordered after it) starts, only once augur's
// gRPC socket is bound: the daemon binds it before the API (daemon.ts).
import { request } from "node:http";
import { parseArgs } from "node:util";
import { apiTarget } from "../api/http-api.js";
import { loadConfig } from "../config/config.js";
import { InvalidArgumentError, errorMessage } from "../errdefs/errors.js";

export const READY_USAGE = `  augur ready [--config FILE] [--root DIR] [--api ADDR] [--timeout SECONDS]
      Wait until augur serve answers on its HTTP API (default <root>/api.sock)
      and exit 0; exit 1 after --timeout (default 90). systemd's ExecStartPost.
`;

export async function readyCommand(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: { config: { type: "string" }, root: { type: "string" }, api: { type: "string" }, timeout: { type: "string" } },
    strict: true,
  });
  const seconds = Number(values.timeout ?? "90");
  if (!Number.isFinite(seconds) || seconds <= 0) throw new InvalidArgumentError(`--timeout ${JSON.stringify(values.timeout)} is not a number of seconds`);
  const api = loadConfig({ root: values.root, api: values.api }, values.config).api;
  const deadline = Date.now() + seconds * 1000;
  let last = "no answer yet";
  for (;;) {
    try {
      await healthz(api);
      process.stdout.write(`augur is ready (${api})\n`);
      return;
    } catch (err) {
      last = errorMessage(err);
    }
    if (Date.now() >= deadline) throw new Error(`augur did not become ready within ${seconds}s on ${api}: ${last}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function healthz(api: string): Promise<void> {
  const target = apiTarget(api);
  return new Promise((resolve, reject) => {
    const req = request({ ...target, path: "/healthz", method: "GET", timeout: 2000 }, (res) => {
      res.resume();
      if (res.statusCode === 200) resolve();
      else reject(new Error(`/healthz answered ${res.statusCode}`));
    });
    req.on("timeout", () => req.destroy(new Error("/healthz timed out")));
    req.on("error", reject);
    req.end();
  });
}
