// Image manifests and indexes (OCI and Docker schema2): media types, the typed
// shapes augur uses, parsing with validation, and platform selection.
import { FailedPreconditionError, NotFoundError, errorMessage } from "../errdefs/errors.js";
import { validateDigest } from "./reference.js";

export const MediaTypes = {
  ociManifest: "application/vnd.oci.image.manifest.v1+json",
  ociIndex: "application/vnd.oci.image.index.v1+json",
  dockerManifest: "application/vnd.docker.distribution.manifest.v2+json",
  dockerManifestList: "application/vnd.docker.distribution.manifest.list.v2+json",
} as const;

const MANIFEST_TYPES: readonly string[] = [MediaTypes.ociManifest, MediaTypes.dockerManifest];
const INDEX_TYPES: readonly string[] = [MediaTypes.ociIndex, MediaTypes.dockerManifestList];

/** The `Accept` header for manifest requests: every type this module parses. */
export const MANIFEST_ACCEPT = [...MANIFEST_TYPES, ...INDEX_TYPES].join(", ");

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  urls?: string[];
  annotations?: Record<string, string>;
  platform?: Platform;
  /** OCI 1.1: the artifactType of the manifest it points at (referrers indexes carry it). */
  artifactType?: string;
}

export interface ImageManifest {
  schemaVersion: 2;
  mediaType: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageIndex {
  schemaVersion: 2;
  mediaType: string;
  manifests: Descriptor[];
}

export type ParsedManifest = { kind: "manifest"; manifest: ImageManifest } | { kind: "index"; index: ImageIndex };

/**
 * Parses manifest bytes. The media type comes from the body's `mediaType`, else
 * from the response `Content-Type`; anything but an image manifest or index is rejected.
 */
export function parseManifest(bytes: Buffer, contentType: string | undefined, what: string): ParsedManifest {
  let doc: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(bytes.toString("utf8"));
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new Error("not a JSON object");
    doc = parsed as Record<string, unknown>;
  } catch (err) {
    throw new FailedPreconditionError(`${what}: manifest is not valid JSON: ${errorMessage(err)}`, { cause: err });
  }
  const declared = typeof doc.mediaType === "string" ? doc.mediaType : contentType?.split(";")[0]?.trim();
  const mediaType = declared ?? (Array.isArray(doc.manifests) ? MediaTypes.ociIndex : MediaTypes.ociManifest);
  if (doc.schemaVersion !== 2) throw new FailedPreconditionError(`${what}: unsupported manifest schemaVersion ${String(doc.schemaVersion)}`);
  if (INDEX_TYPES.includes(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw new FailedPreconditionError(`${what}: index has no manifests array`);
    const manifests = doc.manifests.map((d, i) => parseDescriptor(d, `${what}: manifests[${i}]`));
    return { kind: "index", index: { schemaVersion: 2, mediaType, manifests } };
  }
  if (!MANIFEST_TYPES.includes(mediaType)) throw new FailedPreconditionError(`${what}: unsupported manifest media type ${mediaType}`);
  if (!Array.isArray(doc.layers)) throw new FailedPreconditionError(`${what}: manifest has no layers array`);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType,
    config: parseDescriptor(doc.config, `${what}: config`),
    layers: doc.layers.map((d, i) => parseDescriptor(d, `${what}: layers[${i}]`)),
  };
  if (isStringMap(doc.annotations)) manifest.annotations = doc.annotations;
  return { kind: "manifest", manifest };
}

function parseDescriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== "object" || value === null) throw new FailedPreconditionError(`${where}: descriptor is not an object`);
  const d = value as Record<string, unknown>;
  if (typeof d.mediaType !== "string") throw new FailedPreconditionError(`${where}: descriptor has no mediaType`);
  if (typeof d.digest !== "string") throw new FailedPreconditionError(`${where}: descriptor has no digest`);
  if (typeof d.size !== "number" || !Number.isSafeInteger(d.size) || d.size < 0) throw new FailedPreconditionError(`${where}: descriptor has a bad size`);
  try {
    validateDigest(d.digest);
  } catch (err) {
    throw new FailedPreconditionError(`${where}: ${errorMessage(err)}`, { cause: err });
  }
  const desc: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (Array.isArray(d.urls) && d.urls.every((u) => typeof u === "string")) desc.urls = d.urls;
  if (isStringMap(d.annotations)) desc.annotations = d.annotations;
  const p = d.platform as Record<string, unknown> | undefined;
  if (p && typeof p.os === "string" && typeof p.architecture === "string") {
    desc.platform = { os: p.os, architecture: p.architecture, ...(typeof p.variant === "string" ? { variant: p.variant } : {}) };
  }
  return desc;
}

function isStringMap(v: unknown): v is Record<string, string> {
  return typeof v === "object" && v !== null && !Array.isArray(v) && Object.values(v).every((x) => typeof x === "string");
}

/** `linux/amd64`, `linux/arm64/v8` -> Platform. */
export function parsePlatform(spec: string): Platform {
  const [os = "", architecture = "", variant] = spec.split("/");
  return { os, architecture, ...(variant ? { variant } : {}) };
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter(Boolean).join("/");
}

/** Default variants, as containerd's platforms.Normalize: arm64 is v8, arm is v7. */
function normalisedVariant(p: Platform): string {
  if (p.variant) return p.variant;
  if (p.architecture === "arm64") return "v8";
  if (p.architecture === "arm") return "v7";
  return "";
}

/** The index entry for `platform`: same os and architecture, variant equal after normalisation. */
export function selectManifest(index: ImageIndex, platform: Platform, what: string): Descriptor {
  const wanted = normalisedVariant(platform);
  const found = index.manifests.find(
    (d) => d.platform !== undefined && d.platform.os === platform.os && d.platform.architecture === platform.architecture && normalisedVariant(d.platform) === wanted,
  );
  if (!found) {
    const offered = index.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : "unknown")).join(", ");
    throw new NotFoundError(`${what}: no manifest for platform ${formatPlatform(platform)} (index offers ${offered || "nothing"})`);
  }
  return found;
}
