// "locality": no learning, just where files sit. The speculative fetches
// beside reads (layer/speculative-fetches.ts) expressed at file level, from
// the layers' listings (history.catalog):
// - after a file is touched, the files that follow it in layer order, within
//   READ_AHEAD_BYTES of their sizes (files of one directory sit together in
//   the blob and are read together);
// - after a small file (<= SMALL_FILE_BYTES) is touched, its directory's other
//   small files, nearest in layer order first, within DIR_AHEAD_BYTES (an
//   interpreter importing module after module from one directory);
// - a file predicted is expected to be read whole up to FILE_AHEAD_BYTES
//   (programs read most of what they open).
// Budgets count uncompressed bytes (file sizes): the catalog has no others.
// The latest touched files are answered first, as the speculative queue runs
// its newest batch first. Nothing is predicted before the first access, nor
// for a layer the catalog does not list.
import { DIR_AHEAD_BYTES, FILE_AHEAD_BYTES, READ_AHEAD_BYTES, SMALL_FILE_BYTES } from "../layer/speculative-fetches.js";
import { fileId, registerPredictor, type CatalogFile, type FileKey, type LayerCatalog, type History, type PredictQuery, type PredictedFile, type Predictor } from "./predictor.js";
import { PredictionList } from "./prediction-list.js";

/** Confidence of a file that follows a touched one in layer order, and of a sibling; each older trigger scales them by AGE_FACTOR. */
export const FOLLOWING_CONFIDENCE = 0.5;
export const SIBLING_CONFIDENCE = 0.4;
export const AGE_FACTOR = 0.9;

/** One layer's catalog, indexed for the heuristics. */
interface LayerLayout {
  files: readonly CatalogFile[];
  index: Map<string, number>;
  /** Per directory, the catalog indexes of its small files (in layer order). */
  smallByDir: Map<string, number[]>;
}

const dirOf = (path: string): string => {
  const slash = path.lastIndexOf("/");
  return slash < 0 ? "" : path.slice(0, slash);
};
const isSmall = (f: CatalogFile): boolean => f.size > 0 && f.size <= SMALL_FILE_BYTES;

function layoutOf(files: readonly CatalogFile[]): LayerLayout {
  const index = new Map<string, number>();
  const smallByDir = new Map<string, number[]>();
  files.forEach((f, i) => {
    index.set(f.path, i);
    if (!isSmall(f)) return;
    const dir = dirOf(f.path);
    let list = smallByDir.get(dir);
    if (!list) smallByDir.set(dir, (list = []));
    list.push(i);
  });
  return { files, index, smallByDir };
}

export class LocalityPredictor implements Predictor {
  readonly name = "locality";
  #catalog: LayerCatalog | undefined;
  #layouts = new Map<string, LayerLayout | undefined>();

  async train(history: History): Promise<void> {
    this.#catalog = history.catalog;
    this.#layouts = new Map();
  }

  predict(query: PredictQuery): PredictedFile[] {
    const list = new PredictionList(query, undefined);
    const triggered = new Set<string>();
    const dirsBegun = new Set<string>();
    let age = 0;
    for (let i = query.accessed.length - 1; i >= 0 && !list.full; i--) {
      const touched = query.accessed[i] as FileKey;
      if (triggered.has(fileId(touched))) continue;
      triggered.add(fileId(touched));
      const layout = this.#layout(touched.layer);
      const at = layout?.index.get(touched.path);
      if (!layout || at === undefined) continue;
      const scale = AGE_FACTOR ** age++;
      const offer = (j: number, confidence: number): boolean => {
        const f = layout.files[j] as CatalogFile;
        const whole = Math.min(f.size, FILE_AHEAD_BYTES);
        return list.offer({ layer: touched.layer, path: f.path }, confidence * scale, whole > 0 ? [{ offset: 0, length: whole }] : []);
      };
      // what follows in layer order: files starting within the budget after the touched file's end
      let left = READ_AHEAD_BYTES;
      for (let j = at + 1; j < layout.files.length && left > 0; j++) {
        if (!offer(j, FOLLOWING_CONFIDENCE)) return list.result();
        left -= (layout.files[j] as CatalogFile).size;
      }
      // a small file's directory: its other small files, nearest first, while they fit the budget
      const dir = dirOf(touched.path);
      if (dirsBegun.has(dir) || !isSmall(layout.files[at] as CatalogFile)) continue;
      dirsBegun.add(dir);
      const siblings = (layout.smallByDir.get(dir) ?? []).filter((j) => j !== at).sort((a, b) => Math.abs(a - at) - Math.abs(b - at) || a - b);
      let room = DIR_AHEAD_BYTES;
      for (const j of siblings) {
        room -= (layout.files[j] as CatalogFile).size;
        if (room < 0) break;
        if (!offer(j, SIBLING_CONFIDENCE)) return list.result();
      }
    }
    return list.result();
  }

  #layout(layer: string): LayerLayout | undefined {
    if (!this.#layouts.has(layer)) {
      const files = this.#catalog?.files(layer);
      this.#layouts.set(layer, files ? layoutOf(files) : undefined);
    }
    return this.#layouts.get(layer);
  }
}

registerPredictor("locality", () => new LocalityPredictor());
