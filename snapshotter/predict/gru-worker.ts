// Trains a GRU off augur's main thread: the FUSE handlers and gRPC calls run
// there, and a training takes seconds (predictor-gru.ts). The network starts
// from the weights it is sent and the trained weights go back.
import { parentPort, workerData } from "node:worker_threads";
import { GruNetwork, type GruShape } from "./gru-network.js";
import { trainGru, type GruTrainingOptions, type TrainingSequence } from "./gru-training.js";

export interface GruWorkerInput {
  shape: GruShape;
  params: Float32Array;
  sequences: TrainingSequence[];
  training: GruTrainingOptions;
}

const input = workerData as GruWorkerInput;
const net = new GruNetwork(input.shape, input.params);
const report = await trainGru(net, input.sequences, input.training);
parentPort?.postMessage({ params: net.params, report }, [net.params.buffer as ArrayBuffer]);
