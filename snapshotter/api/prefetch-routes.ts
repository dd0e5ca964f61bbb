// The seed's /prefetch/layer/{layer_hash}: POST starts fetching the whole of a
// mounted layer in the background and answers its progress (202); GET answers
// the progress alone.
import { InvalidArgumentError, NotFoundError } from "../errdefs/errors.js";
import type { LayerProgress } from "../remote/remote-layers.js";
import type { Route } from "./http-api.js";

export interface LayerPrefetcher {
  prefetchLayer(digest: string): Promise<LayerProgress | undefined>;
  layerProgress(digest: string): Promise<LayerProgress | undefined>;
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;

function layerOf(params: string[]): string {
  const d = decodeURIComponent(params[0] ?? "");
  if (!DIGEST.test(d)) throw new InvalidArgumentError(`${JSON.stringify(d.slice(0, 80))} is not a layer digest (sha256:<64 hex>)`);
  return d;
}

function found(p: LayerProgress | undefined, digest: string): LayerProgress {
  if (!p) throw new NotFoundError(`layer ${digest} is not mounted by this augur (it is served lazily only once an image using it is pulled)`);
  return p;
}

export function prefetchRoutes(layers: LayerPrefetcher | undefined): Route[] {
  const path = /^\/prefetch\/layer\/([^/]+)$/;
  const need = (): LayerPrefetcher => {
    if (!layers) throw new NotFoundError("lazy pulling is disabled in this augur: no layers to prefetch");
    return layers;
  };
  return [
    {
      method: "POST",
      path,
      handler: async ({ params }) => {
        const digest = layerOf(params);
        return { status: 202, body: found(await need().prefetchLayer(digest), digest) };
      },
    },
    {
      method: "GET",
      path,
      handler: async ({ params }) => {
        const digest = layerOf(params);
        return { body: found(await need().layerProgress(digest), digest) };
      },
    },
  ];
}
