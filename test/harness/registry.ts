// Moved to scripts/lib so the demo and benchmarks use the same launchers.
export * from "../../scripts/lib/registry.js";
