// The application layers of the workloads people start often, for traces and
// predictions (docs/prediction.md): a python web app, a python data script
// importing modules of its own, a node tool, a shell-script tool and a small
// C project built with make. Each prints READY when it is up. They sit on the
// Debian layers of debian-image.ts, so several share base layers.
import type { LayerEntry } from "./oci-image.js";

const PY_WEB = `# A WSGI web app answering one request in-process (containers here have no network).
import json, logging, html, email.utils, http.cookies, urllib.parse, wsgiref.simple_server, wsgiref.util, datetime, uuid

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
log = logging.getLogger("web")

def app(environ, start_response):
    query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
    body = json.dumps({"ok": True, "name": html.escape(query.get("name", ["world"])[0]), "at": email.utils.formatdate(), "id": str(uuid.uuid4())})
    cookie = http.cookies.SimpleCookie()
    cookie["session"] = "1"
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", cookie["session"].OutputString())])
    return [body.encode()]

environ = {"QUERY_STRING": "name=augur"}
wsgiref.util.setup_testing_defaults(environ)
status = []
out = b"".join(app(environ, lambda s, h: status.append(s)))
log.info("%s %s %s", status[0], len(out), datetime.datetime.now().isoformat())
print("READY", flush=True)
`;

const PY_DATA_MAIN = `import sys
from pipeline import load, report
rows = load.read("/app/pipeline/sales.csv")
print(report.summary(rows))
print("READY", flush=True)
`;
const PY_DATA_LOAD = `import csv, decimal, datetime

def read(path):
    with open(path, newline="") as f:
        return [{"day": datetime.date.fromisoformat(r["day"]), "amount": decimal.Decimal(r["amount"]), "region": r["region"]} for r in csv.DictReader(f)]
`;
const PY_DATA_REPORT = `import statistics, sqlite3, collections, fractions, itertools, json

def summary(rows):
    db = sqlite3.connect(":memory:")
    db.execute("create table s (region text, amount real)")
    db.executemany("insert into s values (?, ?)", [(r["region"], float(r["amount"])) for r in rows])
    by_region = dict(db.execute("select region, sum(amount) from s group by region order by region"))
    amounts = [float(r["amount"]) for r in rows]
    share = fractions.Fraction(len([a for a in amounts if a > statistics.mean(amounts)]), len(amounts))
    runs = [len(list(g)) for _, g in itertools.groupby(sorted(r["region"] for r in rows))]
    return json.dumps({"regions": by_region, "median": statistics.median(amounts), "above_mean": str(share), "runs": runs, "top": collections.Counter(r["region"] for r in rows).most_common(1)})
`;
const salesCsv = (): string => {
  const lines = ["day,amount,region"];
  const regions = ["north", "south", "east", "west"];
  for (let i = 0; i < 400; i++) lines.push(`2024-${String(1 + (i % 12)).padStart(2, "0")}-${String(1 + (i % 28)).padStart(2, "0")},${((i * 37) % 1000) / 10 + 1},${regions[i % 4]}`);
  return lines.join("\n") + "\n";
};

const NODE_TOOL = `// A small command-line tool: hashes and compresses a generated report.
const fs = require("node:fs");
const path = require("node:path");
const zlib = require("node:zlib");
const crypto = require("node:crypto");
const os = require("node:os");
const util = require("node:util");
const { EventEmitter } = require("node:events");
const readline = require("node:readline");
const url = require("node:url");
const lines = [];
for (let i = 0; i < 2000; i++) lines.push(util.format("%d %s %s", i, os.platform(), path.join("/data", String(i % 7))));
const text = lines.join("\\n");
const gz = zlib.gzipSync(text);
const digest = crypto.createHash("sha256").update(gz).digest("hex");
const e = new EventEmitter();
e.on("done", () => console.log(JSON.stringify({ bytes: gz.length, digest, home: url.pathToFileURL(os.tmpdir()).href, rl: typeof readline.createInterface })));
fs.writeFileSync("/tmp/report.gz", gz);
e.emit("done");
console.log("READY");
`;

const SHELL_TOOL = `#!/bin/sh
# A shell-script tool: inventories the image with the usual utilities.
set -e
docs=$(find /usr/share/doc -maxdepth 1 -type d | wc -l)
users=$(cut -d: -f1 /etc/passwd | sort | tr '\\n' ' ')
shells=$(grep -c sh /etc/shells || true)
tar -cf /tmp/etc.tar -C / etc 2>/dev/null
gzip -f /tmp/etc.tar
sum=$(sha256sum /tmp/etc.tar.gz | awk '{print $1}')
sed -n '1p' /etc/os-release
echo "docs=$docs shells=$shells sum=$sum users=$users" | head -c 300
echo
date -u +%Y >/dev/null
echo READY
`;

const PROJ_MAKEFILE = `CFLAGS = -O2 -Wall
OBJS = main.o util.o parse.o
/tmp/proj: $(OBJS:%=/tmp/%)
\t$(CC) -o $@ $^ -lm
/tmp/%.o: %.c util.h
\t$(CC) $(CFLAGS) -c -o $@ $<
`;
const PROJ_UTIL_H = `#include <stddef.h>
double mean(const double *xs, size_t n);
size_t parse(const char *s, double *out, size_t max);
`;
const PROJ_UTIL_C = `#include <math.h>
#include "util.h"
double mean(const double *xs, size_t n) { double t = 0; for (size_t i = 0; i < n; i++) t += xs[i]; return n ? t / n : NAN; }
`;
const PROJ_PARSE_C = `#include <stdlib.h>
#include <string.h>
#include "util.h"
size_t parse(const char *s, double *out, size_t max) {
  size_t n = 0; char *end;
  while (*s && n < max) { out[n] = strtod(s, &end); if (end == s) break; n++; s = end; while (*s == ',' || *s == ' ') s++; }
  return n;
}
`;
const PROJ_MAIN_C = `#include <stdio.h>
#include <math.h>
#include "util.h"
int main(void) {
  double xs[16];
  size_t n = parse("1.5, 2.5, 3.5, 4.5", xs, 16);
  if (n == 4 && fabs(mean(xs, n) - 3.0) < 1e-9) printf("READY\\n");
  return 0;
}
`;

/** File layers by name: what each workload adds on top of its Debian layers. */
export const APP_LAYERS: Record<string, LayerEntry[]> = {
  "py-web": [
    { type: "dir", path: "app" },
    { type: "file", path: "app/web.py", content: PY_WEB },
  ],
  "py-data": [
    { type: "dir", path: "app" },
    { type: "file", path: "app/main.py", content: PY_DATA_MAIN },
    { type: "dir", path: "app/pipeline" },
    { type: "file", path: "app/pipeline/__init__.py", content: "" },
    { type: "file", path: "app/pipeline/load.py", content: PY_DATA_LOAD },
    { type: "file", path: "app/pipeline/report.py", content: PY_DATA_REPORT },
    { type: "file", path: "app/pipeline/sales.csv", content: salesCsv() },
  ],
  "node-tool": [
    { type: "dir", path: "app" },
    { type: "file", path: "app/tool.js", content: NODE_TOOL },
  ],
  "shell-tool": [
    { type: "dir", path: "app" },
    { type: "file", path: "app/tool.sh", content: SHELL_TOOL, mode: 0o755 },
  ],
  "gcc-build": [
    { type: "dir", path: "app" },
    { type: "dir", path: "app/proj" },
    { type: "file", path: "app/proj/Makefile", content: PROJ_MAKEFILE },
    { type: "file", path: "app/proj/util.h", content: PROJ_UTIL_H },
    { type: "file", path: "app/proj/util.c", content: PROJ_UTIL_C },
    { type: "file", path: "app/proj/parse.c", content: PROJ_PARSE_C },
    { type: "file", path: "app/proj/main.c", content: PROJ_MAIN_C },
  ],
};
