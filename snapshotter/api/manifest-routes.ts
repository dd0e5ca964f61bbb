// The seed's /manifest/parse: a cluster manifest in the body; `?signature=`
// (a workload signature) or `?image=` (an image reference or manifest digest)
// picks the workload; the answer is its layer preference list and prefetch
// granularity (and the workloads it matched). Without either, every workload.
import { findProfiles, LIMITS, parseClusterManifest } from "../manifest/cluster-manifest.js";
import { InvalidArgumentError, NotFoundError } from "../errdefs/errors.js";
import type { Route } from "./http-api.js";

export function manifestRoutes(): Route[] {
  return [
    {
      method: "POST",
      path: /^\/manifest\/parse$/,
      maxBody: LIMITS.bytes,
      handler: async ({ url, body }) => {
        const bytes = await body();
        if (bytes.length === 0) throw new InvalidArgumentError("no cluster manifest in the request body");
        const m = parseClusterManifest(bytes);
        const signature = url.searchParams.get("signature") ?? undefined;
        const image = url.searchParams.get("image") ?? undefined;
        const workloads = signature === undefined && image === undefined ? m.workloads : findProfiles(m, { ...(signature ? { signature } : {}), ...(image ? { image } : {}) });
        if (workloads.length === 0) throw new NotFoundError(`no workload in the manifest has ${signature ? `signature ${signature}` : `image ${image ?? ""}`}`);
        return {
          body: {
            builtBy: m.builtBy,
            workloads: workloads.map((w) => ({
              signature: w.signature, image: w.image, manifest: w.manifest, runs: w.runs,
              layerPreference: w.layerPreference, granularity: w.granularity, files: w.files.length,
            })),
          },
        };
      },
    },
  ];
}
