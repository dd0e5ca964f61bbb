// Image references, parsed and normalised the way docker and containerd do
// (distribution's reference grammar): `busybox` is `docker.io/library/busybox:latest`.
import { InvalidArgumentError } from "../errdefs/errors.js";

/** The registry name Docker Hub images carry; its API lives at `registry-1.docker.io`. */
export const DOCKER_HUB = "docker.io";
const DOCKER_HUB_ALIASES = new Set(["index.docker.io", "registry-1.docker.io"]);
const DEFAULT_TAG = "latest";
const MAX_NAME_LENGTH = 255;

const DOMAIN_COMPONENT = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const DOMAIN = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const PATH_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;
const SHA256_HEX = /^[a-f0-9]{64}$/;

/** A parsed, normalised image reference. */
export interface ImageReference {
  /** Registry name as written in the reference, `docker.io` for Docker Hub. */
  host: string;
  /** Repository path inside the registry, `library/busybox` for `busybox`. */
  repository: string;
  /** Tag; `latest` when the reference names neither tag nor digest. */
  tag?: string;
  /** Manifest digest (`sha256:<hex>`) when the reference pins one. */
  digest?: string;
}

/** Throws InvalidArgumentError unless `digest` is a well-formed `algorithm:hex` digest. */
export function validateDigest(digest: string): string {
  const [algorithm, hex] = digest.split(":", 2);
  if (!DIGEST.test(digest) || hex === undefined) {
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}: want algorithm:hex`);
  }
  if (algorithm === "sha256" && !SHA256_HEX.test(hex)) {
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}: sha256 needs 64 lowercase hex characters`);
  }
  if (algorithm !== "sha256" && algorithm !== "sha512") {
    throw new InvalidArgumentError(`invalid digest ${JSON.stringify(digest)}: unsupported algorithm ${algorithm}`);
  }
  return digest;
}

/** Parses `ref` (`[host[:port]/]path[:tag][@digest]`), applying docker.io defaults. */
export function parseReference(ref: string): ImageReference {
  const fail = (why: string): never => {
    throw new InvalidArgumentError(`invalid image reference ${JSON.stringify(ref)}: ${why}`);
  };
  if (ref.trim() === "") fail("empty");
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    try {
      validateDigest(digest);
    } catch (err) {
      fail((err as Error).message.replace(/^invalid digest /, "bad digest "));
    }
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(":");
  if (colon > rest.lastIndexOf("/")) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) fail(`bad tag ${JSON.stringify(tag)}`);
  }
  const { host, path } = splitHost(rest);
  if (!DOMAIN.test(host)) fail(`bad registry host ${JSON.stringify(host)}`);
  if (path === "") fail("missing repository name");
  for (const component of path.split("/")) {
    if (component !== component.toLowerCase()) fail("repository name must be lowercase");
    if (!PATH_COMPONENT.test(component)) fail(`bad repository path component ${JSON.stringify(component)}`);
  }
  const repository = host === DOCKER_HUB && !path.includes("/") ? `library/${path}` : path;
  if (`${host}/${repository}`.length > MAX_NAME_LENGTH) fail(`name longer than ${MAX_NAME_LENGTH} characters`);
  const parsed: ImageReference = { host, repository };
  if (tag !== undefined || digest === undefined) parsed.tag = tag ?? DEFAULT_TAG;
  if (digest !== undefined) parsed.digest = digest;
  return parsed;
}

/** Splits off the registry host like docker does: the first component is a host if it looks like one. */
function splitHost(name: string): { host: string; path: string } {
  const slash = name.indexOf("/");
  const first = slash < 0 ? "" : name.slice(0, slash);
  const isHost = first !== "" && (first.includes(".") || first.includes(":") || first === "localhost" || first !== first.toLowerCase());
  if (!isHost) return { host: DOCKER_HUB, path: name };
  const host = DOCKER_HUB_ALIASES.has(first) ? DOCKER_HUB : first;
  return { host, path: name.slice(slash + 1) };
}

/** The canonical string form: `host/repository[:tag][@digest]`. */
export function formatReference(ref: ImageReference): string {
  return `${ref.host}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ""}${ref.digest !== undefined ? `@${ref.digest}` : ""}`;
}

/** `parseReference` for strings; references already parsed pass through. */
export function toReference(ref: string | ImageReference): ImageReference {
  return typeof ref === "string" ? parseReference(ref) : ref;
}
