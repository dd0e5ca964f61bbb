// augur's artifacts in an OCI registry: an OCI image manifest with an
// artifactType, the OCI empty config, and blobs as its layers (the cluster
// manifest first, then the seekable indexes it references). An image's
// profile has the image manifest as its `subject`: registries with the OCI
// referrers API list it there; on the others (Debian's docker-registry,
// distribution 2.8) it is listed in the OCI image index tagged
// `sha256-<hex>`, the referrers tag schema. Everything read back is untrusted:
// shapes, media types, sizes and digests are checked.
import { InvalidArgumentError, NotFoundError } from "../errdefs/errors.js";
import type { Descriptor } from "../registry/manifest.js";
import type { RegistryClient } from "../registry/registry-client.js";
import { formatReference, type ImageReference } from "../registry/reference.js";
import { sha256Digest } from "../util/digest.js";

export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
export const OCI_EMPTY = "application/vnd.oci.empty.v1+json";
const EMPTY = Buffer.from("{}");
const CREATED = "org.opencontainers.image.created";
/** Annotation of an index blob in an artifact: the layer digest it describes. */
export const LAYER_ANNOTATION = "io.augur.layer.digest";
/** An artifact manifest, or a referrers index, bigger than this is refused. */
const MAX_MANIFEST_BYTES = 4 << 20;

export interface ArtifactBlob {
  mediaType: string;
  bytes: Buffer;
  annotations?: Record<string, string>;
}

export interface ArtifactManifest {
  mediaType: string;
  artifactType: string;
  layers: Descriptor[];
  subject?: Descriptor;
  annotations: Record<string, string>;
}

/** How a lookup was answered, for logs and tests. */
export type FoundBy = "referrers-api" | "tag-schema";

/** A repository (no tag, no digest) of an image reference. */
export function repositoryOf(ref: ImageReference): ImageReference {
  return { host: ref.host, repository: ref.repository };
}

/** The referrers tag schema's tag for a subject digest. */
export const fallbackTag = (digest: string): string => digest.replace(":", "-");

/**
 * Pushes an artifact into `repo`: its blobs, the empty config, the manifest
 * (by digest, and under `tag` if given). With a subject on a registry without
 * the referrers API, the fallback tag's index gets this manifest added, newest
 * first. Returns the manifest's descriptor.
 */
export async function pushArtifact(
  client: RegistryClient,
  repo: ImageReference,
  a: { artifactType: string; blobs: ArtifactBlob[]; subject?: Descriptor; annotations?: Record<string, string>; tag?: string },
): Promise<Descriptor> {
  const layers: Descriptor[] = [];
  for (const b of a.blobs) {
    const digest = await client.pushBlob(repo, b.bytes);
    layers.push({ mediaType: b.mediaType, digest, size: b.bytes.length, ...(b.annotations ? { annotations: b.annotations } : {}) });
  }
  await client.pushBlob(repo, EMPTY);
  const annotations = { [CREATED]: new Date().toISOString(), ...a.annotations };
  const manifest = {
    schemaVersion: 2,
    mediaType: OCI_MANIFEST,
    artifactType: a.artifactType,
    config: { mediaType: OCI_EMPTY, digest: sha256Digest(EMPTY), size: EMPTY.length },
    layers,
    ...(a.subject ? { subject: { mediaType: a.subject.mediaType, digest: a.subject.digest, size: a.subject.size } } : {}),
    annotations,
  };
  const bytes = Buffer.from(JSON.stringify(manifest));
  const digest = await client.pushManifest(repo, sha256Digest(bytes), OCI_MANIFEST, bytes);
  if (a.tag) await client.pushManifest(repo, a.tag, OCI_MANIFEST, bytes);
  const desc: Descriptor = { mediaType: OCI_MANIFEST, digest, size: bytes.length, artifactType: a.artifactType, annotations };
  if (a.subject && !(await client.referrersApi(repo, a.subject.digest))) {
    const tag = fallbackTag(a.subject.digest);
    const existing = await client.manifestBytes(repo, tag, OCI_INDEX);
    const earlier = existing ? indexEntries(existing.bytes, `index ${formatReference(repo)}:${tag}`).filter((d) => d.digest !== digest) : [];
    const index = { schemaVersion: 2, mediaType: OCI_INDEX, manifests: [desc, ...earlier] };
    await client.pushManifest(repo, tag, OCI_INDEX, Buffer.from(JSON.stringify(index)));
  }
  return desc;
}

/** Per registry host: it answered that it has no referrers API, so lookups go straight to the tag. */
const noReferrersApi = new Set<string>();
/** Hosts whose referrers API answered: the fallback tag is not asked beside it any more. */
const referrersApi = new Set<string>();

/**
 * The newest artifact of `artifactType` whose subject is `subject` in `repo`,
 * or undefined. One request on a registry with the referrers API, or one
 * remembered not to have it; two the first time on one without.
 */
export async function findArtifact(client: RegistryClient, repo: ImageReference, subject: string, artifactType: string): Promise<{ descriptor: Descriptor; foundBy: FoundBy } | undefined> {
  let listed: Buffer | undefined;
  let foundBy: FoundBy = "referrers-api";
  // until it is known whether a host has the referrers API, the fallback tag is asked at the same
  // time: a node's first pull from a registry without the API then waits one round trip, not two
  const tagged = (): Promise<Buffer | undefined> => client.manifestBytes(repo, fallbackTag(subject), OCI_INDEX).then((m) => m?.bytes);
  const early = noReferrersApi.has(repo.host) || referrersApi.has(repo.host) ? undefined : tagged();
  early?.catch(() => undefined); // awaited only when the referrers API does not answer
  if (!noReferrersApi.has(repo.host)) listed = await client.referrersApi(repo, subject);
  if (listed) referrersApi.add(repo.host);
  else {
    noReferrersApi.add(repo.host);
    foundBy = "tag-schema";
    listed = await (early ?? tagged());
  }
  if (!listed) return undefined;
  const entries = indexEntries(listed, `referrers of ${formatReference(repo)}@${subject}`).filter((d) => artifactTypeOf(d) === artifactType);
  const newest = entries.sort((a, b) => (created(b) ?? "").localeCompare(created(a) ?? ""))[0];
  return newest ? { descriptor: newest, foundBy } : undefined;
}

/** An artifact's manifest by digest or tag, checked; and a reader of its blobs, verified and bounded. */
export async function pullArtifact(client: RegistryClient, repo: ImageReference, tagOrDigest: string): Promise<{ digest: string; manifest: ArtifactManifest; blob: (d: Descriptor, maxBytes: number) => Promise<Buffer> }> {
  const got = await client.manifestBytes(repo, tagOrDigest, OCI_MANIFEST);
  const where = `artifact ${formatReference(repo)}${tagOrDigest.includes(":") ? "@" : ":"}${tagOrDigest}`;
  if (!got) throw new NotFoundError(`${where}: not found`);
  if (got.bytes.length > MAX_MANIFEST_BYTES) throw new InvalidArgumentError(`${where}: manifest of ${got.bytes.length} bytes is too big`);
  const manifest = parseArtifactManifest(got.bytes, where);
  return {
    digest: got.digest,
    manifest,
    blob: async (d, maxBytes) => {
      if (d.size > maxBytes) throw new InvalidArgumentError(`${where}: blob ${d.digest} is ${d.size} bytes, at most ${maxBytes} taken`);
      const bytes = await client.fetchBlob(repo, d.digest); // verified against its digest
      if (bytes.length !== d.size) throw new InvalidArgumentError(`${where}: blob ${d.digest} is ${bytes.length} bytes, its descriptor says ${d.size}`);
      return bytes;
    },
  };
}

// ---- parsing what came back ----

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
const DIGEST = /^sha256:[0-9a-f]{64}$/;

function descriptor(v: unknown, where: string): Descriptor {
  if (!isObj(v) || typeof v.mediaType !== "string" || typeof v.digest !== "string" || !DIGEST.test(v.digest) || !Number.isSafeInteger(v.size) || (v.size as number) < 0) {
    throw new InvalidArgumentError(`${where}: not a descriptor`);
  }
  return v as unknown as Descriptor;
}

function indexEntries(bytes: Buffer, where: string): Descriptor[] {
  if (bytes.length > MAX_MANIFEST_BYTES) throw new InvalidArgumentError(`${where}: ${bytes.length} bytes is too big`);
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new InvalidArgumentError(`${where}: not JSON`);
  }
  if (!isObj(doc) || !Array.isArray(doc.manifests)) throw new InvalidArgumentError(`${where}: not an image index`);
  return doc.manifests.map((m, i) => descriptor(m, `${where}: manifests[${i}]`));
}

function parseArtifactManifest(bytes: Buffer, where: string): ArtifactManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(bytes.toString("utf8"));
  } catch {
    throw new InvalidArgumentError(`${where}: not JSON`);
  }
  if (!isObj(doc) || doc.mediaType !== OCI_MANIFEST || typeof doc.artifactType !== "string" || !Array.isArray(doc.layers)) {
    throw new InvalidArgumentError(`${where}: not an OCI artifact manifest`);
  }
  const annotations: Record<string, string> = {};
  if (isObj(doc.annotations)) for (const [k, v] of Object.entries(doc.annotations)) if (typeof v === "string") annotations[k] = v;
  return {
    mediaType: OCI_MANIFEST,
    artifactType: doc.artifactType,
    layers: doc.layers.map((l, i) => descriptor(l, `${where}: layers[${i}]`)),
    ...(doc.subject !== undefined ? { subject: descriptor(doc.subject, `${where}: subject`) } : {}),
    annotations,
  };
}

const artifactTypeOf = (d: Descriptor): string | undefined => d.artifactType;
const created = (d: Descriptor): string | undefined => d.annotations?.[CREATED];
