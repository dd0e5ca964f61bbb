// What `augur pull` shows while it works. On a terminal: one live line per
// layer (waiting, lazy, downloading bytes, applying, unpacked, present) and a
// summary line at the end. Not on a terminal: only the summary. Quiet: nothing.

export type LayerState = "waiting" | "present" | "preparing" | "lazy" | "downloading" | "downloaded" | "applying" | "unpacked" | "failed";

export interface LayerProgress {
  digest: string;
  size: number;
  state: LayerState;
  /** Bytes of the layer blob fetched so far (downloading). */
  fetched: number;
}

export interface PullSummary {
  image: string;
  layers: number;
  lazy: number;
  unpacked: number;
  /** Layers whose snapshot already existed. */
  present: number;
  seconds: number;
}

export type ProgressMode = "tty" | "plain" | "quiet";

/** `IMAGE: N layers, M lazy, K unpacked, in X s` (with `, P present` when some were there already). */
export function formatSummary(s: PullSummary): string {
  const present = s.present > 0 ? `, ${s.present} present` : "";
  return `${s.image}: ${s.layers} layers, ${s.lazy} lazy, ${s.unpacked} unpacked${present}, in ${s.seconds.toFixed(1)} s`;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n / 1024;
  let u = 0;
  for (; v >= 1024 && u < units.length - 1; u++) v /= 1024;
  return `${v.toFixed(1)} ${units[u]}`;
}

function describe(l: LayerProgress): string {
  switch (l.state) {
    case "downloading":
      return `downloading ${formatBytes(l.fetched)} / ${formatBytes(l.size)}`;
    case "present":
      return "already present";
    case "lazy":
      return "lazy (served by the snapshotter)";
    case "unpacked":
      return `unpacked (${formatBytes(l.size)})`;
    default:
      return l.state;
  }
}

/** One line per layer: short digest, position, state. */
export function renderLayers(layers: readonly LayerProgress[]): string[] {
  const width = String(layers.length).length;
  return layers.map((l, i) => `  ${l.digest.slice(0, 19)}  ${String(i + 1).padStart(width)}/${layers.length}  ${describe(l)}`);
}

export class PullProgress {
  readonly #mode: ProgressMode;
  readonly #out: NodeJS.WritableStream;
  readonly #layers: LayerProgress[] = [];
  #header = "";
  #drawn = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(mode: ProgressMode, out: NodeJS.WritableStream = process.stdout) {
    this.#mode = mode;
    this.#out = out;
  }

  /** Starts the live display for `layers` of `image`. */
  start(image: string, layers: readonly { digest: string; size: number }[]): void {
    this.#header = `${image}`;
    for (const l of layers) this.#layers.push({ digest: l.digest, size: l.size, state: "waiting", fetched: 0 });
    if (this.#mode !== "tty") return;
    this.#draw();
    this.#timer = setInterval(() => this.#draw(), 200);
    this.#timer.unref();
  }

  set(index: number, state: LayerState, fetched?: number): void {
    const l = this.#layers[index];
    if (!l) return;
    l.state = state;
    if (fetched !== undefined) l.fetched = fetched;
  }

  /** The counts the summary reports. */
  counts(): { lazy: number; unpacked: number; present: number } {
    const n = (s: LayerState): number => this.#layers.filter((l) => l.state === s).length;
    return { lazy: n("lazy"), unpacked: n("unpacked"), present: n("present") };
  }

  /** Stops the live display; prints the summary unless quiet. Without a summary (a failure) only the display stops. */
  finish(summary?: PullSummary): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    if (this.#mode === "tty") this.#draw();
    if (summary && this.#mode !== "quiet") this.#out.write(formatSummary(summary) + "\n");
  }

  #draw(): void {
    const lines = [this.#header, ...renderLayers(this.#layers)];
    const up = this.#drawn > 0 ? `\x1b[${this.#drawn}A` : "";
    this.#out.write(up + lines.map((l) => `\x1b[2K${l}\n`).join(""));
    this.#drawn = lines.length;
  }
}
