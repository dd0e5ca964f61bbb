// CLI: builds the benchmark images from Debian packages and pushes them (plain
// and eStargz) into the cached registry storage the benchmark serves.
//   node dist/scripts/images/build-debian-images.js [--cache DIR] [--only python,gcc] [--no-estargz]
import { parseArgs } from "node:util";
import { DEFAULT_CACHE, buildDebianImages, describeLayers, pushDebianImages } from "./debian-image.js";

const { values } = parseArgs({
  options: {
    cache: { type: "string", default: DEFAULT_CACHE },
    only: { type: "string" },
    "no-estargz": { type: "boolean", default: false },
  },
});
const t0 = performance.now();
const images = await buildDebianImages(values.cache, values.only ? values.only.split(",") : undefined);
const pushed = await pushDebianImages(images, values.cache, { estargz: !values["no-estargz"] });
for (const p of pushed) {
  const plainTotal = p.plain.layers.reduce((a, l) => a + l.size, 0);
  console.log(`${p.workload.repo}:plain    ${(plainTotal / 1e6).toFixed(1)} MB compressed: ${describeLayers(p.plain.layers)}`);
  if (p.estargz) {
    const total = p.estargz.layers.reduce((a, l) => a + l.size, 0);
    console.log(`${p.workload.repo}:estargz  ${(total / 1e6).toFixed(1)} MB compressed: ${p.estargz.layers.map((l) => (l.size / 1e6).toFixed(1)).join(" + ")} MB`);
  }
}
console.log(`images ready in ${values.cache} (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
