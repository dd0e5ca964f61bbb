// A trained GRU on disk: `gru-model.json` (shape, vocabulary, what it was
// trained on) beside `gru-weights.f32` (the weights, little-endian float32,
// in GruNetwork's layout). The weights are written first and both files are
// renamed into place, so a crash leaves the old model or the new, and the
// JSON names the weight count so a torn or foreign file is refused.
import { readFile, rename, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { FailedPreconditionError } from "../errdefs/errors.js";
import { GruNetwork, parameterCount, type GruShape } from "./gru-network.js";
import type { FileKey } from "./predictor.js";

export const GRU_MODEL_FILE = "gru-model.json";
export const GRU_WEIGHTS_FILE = "gru-weights.f32";
const FORMAT = 1;

export interface SavedGru {
  net: GruNetwork;
  /** Output token i is vocabulary[i]. */
  vocabulary: FileKey[];
  /** What the model was trained on (predictor-gru.ts fingerprint), to tell whether it is still current. */
  trainedOn: string;
}

interface ModelJson {
  format: number;
  shape: GruShape;
  weights: number;
  vocabulary: [string, string][];
  trainedOn: string;
}

export async function saveGru(dir: string, model: SavedGru): Promise<void> {
  await mkdir(dir, { recursive: true });
  const w = model.net.params;
  const bytes = Buffer.alloc(w.length * 4);
  for (let i = 0; i < w.length; i++) bytes.writeFloatLE(w[i] as number, i * 4);
  const json: ModelJson = {
    format: FORMAT, shape: model.net.shape, weights: w.length,
    vocabulary: model.vocabulary.map((f) => [f.layer, f.path]), trainedOn: model.trainedOn,
  };
  const put = async (name: string, data: string | Buffer): Promise<void> => {
    await writeFile(join(dir, `${name}.tmp`), data);
    await rename(join(dir, `${name}.tmp`), join(dir, name));
  };
  await put(GRU_WEIGHTS_FILE, bytes);
  await put(GRU_MODEL_FILE, JSON.stringify(json));
}

/** The model saved in `dir`, or undefined when there is none. Throws when the files are there but do not make a model. */
export async function loadGru(dir: string): Promise<SavedGru | undefined> {
  let text: string;
  try {
    text = await readFile(join(dir, GRU_MODEL_FILE), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  const bad = (why: string): FailedPreconditionError => new FailedPreconditionError(`GRU model in ${dir}: ${why}`);
  let json: ModelJson;
  try {
    json = JSON.parse(text) as ModelJson;
  } catch (err) {
    throw new FailedPreconditionError(`GRU model in ${dir}: unreadable ${GRU_MODEL_FILE}`, { cause: err });
  }
  if (json.format !== FORMAT) throw bad(`format ${json.format}, this augur reads ${FORMAT}`);
  const shape = json.shape;
  if (parameterCount(shape) !== json.weights || json.vocabulary.length !== shape.outputs) throw bad("shape, weights and vocabulary disagree");
  const bytes = await readFile(join(dir, GRU_WEIGHTS_FILE));
  if (bytes.length !== json.weights * 4) throw bad(`${GRU_WEIGHTS_FILE} has ${bytes.length} bytes, expected ${json.weights * 4}`);
  const w = new Float32Array(json.weights);
  for (let i = 0; i < w.length; i++) w[i] = bytes.readFloatLE(i * 4);
  return {
    net: new GruNetwork(shape, w),
    vocabulary: json.vocabulary.map(([layer, path]) => ({ layer, path })),
    trainedOn: json.trainedOn,
  };
}
