// Importing this registers every predictor (predictor.ts createPredictor).
import "./predictor-replay.js";
import "./predictor-frequency.js";
import "./predictor-markov.js";
import "./predictor-locality.js";
import "./predictor-gru.js";
