// Logging. One line per event on stderr, `level module: message key=value`.
// Debug lines for a module appear when AUGUR_DEBUG lists it (comma separated,
// or `all`), in the spirit of grpc-js's GRPC_TRACE.
type Fields = Record<string, string | number | boolean | undefined>;

const enabled = new Set((process.env.AUGUR_DEBUG ?? "").split(",").map((s) => s.trim()).filter(Boolean));

function format(fields?: Fields): string {
  if (!fields) return "";
  return Object.entries(fields)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => ` ${k}=${typeof v === "string" && /[\s"=]/.test(v) ? JSON.stringify(v) : String(v)}`)
    .join("");
}

export interface Logger {
  debug(msg: string, fields?: Fields): void;
  info(msg: string, fields?: Fields): void;
  warn(msg: string, fields?: Fields): void;
  error(msg: string, fields?: Fields): void;
}

export function logger(module: string): Logger {
  const write = (level: string, msg: string, fields?: Fields): void => {
    process.stderr.write(`${new Date().toISOString()} ${level} ${module}: ${msg}${format(fields)}\n`);
  };
  const debugOn = enabled.has("all") || enabled.has(module);
  return {
    debug: (m, f) => debugOn && write("debug", m, f),
    info: (m, f) => write("info", m, f),
    warn: (m, f) => write("warn", m, f),
    error: (m, f) => write("error", m, f),
  };
}
