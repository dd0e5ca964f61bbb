// Pushing augur's artifacts into a real registry (Debian's docker-registry,
// distribution 2.8: no referrers API, so the referrers tag schema) and finding
// and pulling them back, verified.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { join } from "node:path";
import { startRegistry, type Registry } from "../harness/registry.js";
import { removeScratch, scratchDir } from "../harness/processes.js";
import { buildImage, busyboxLayer, pushImage } from "../../scripts/images/oci-image.js";
import { RegistryClient } from "../../snapshotter/registry/registry-client.js";
import { parseReference } from "../../snapshotter/registry/reference.js";
import { findArtifact, pullArtifact, pushArtifact, repositoryOf } from "../../snapshotter/manifest/manifest-artifact.js";
import { sha256Digest } from "../../snapshotter/util/digest.js";

let dir: string;
let registry: Registry;
let client: RegistryClient;
let subject: { mediaType: string; digest: string; size: number };
const TYPE = "application/vnd.augur.profile.v1";

beforeAll(async () => {
  dir = scratchDir("as-push-");
  registry = await startRegistry(dir);
  client = new RegistryClient({ plainHttp: true });
  const image = await buildImage(join(dir, "img"), { layers: [busyboxLayer()], cmd: ["/bin/sh"] });
  pushImage(image, `${registry.host}/push/app:1`);
  const got = await client.manifestBytes(`${registry.host}/push/app:1`, "1");
  if (!got) throw new Error("pushed image not found");
  subject = { mediaType: got.mediaType ?? "application/vnd.oci.image.manifest.v1+json", digest: got.digest, size: got.bytes.length };
}, 120_000);

afterAll(async () => {
  await client?.close();
  await registry?.stop();
  await removeScratch(dir);
});

describe("augur artifacts in a registry", () => {
  it("pushes an artifact with a subject and finds it through the referrers tag schema, newest first", async () => {
    const repo = repositoryOf(parseReference(`${registry.host}/push/app:1`));
    const first = await pushArtifact(client, repo, { artifactType: TYPE, subject, blobs: [{ mediaType: "application/json", bytes: Buffer.from('{"n":1}') }], annotations: { "org.opencontainers.image.created": "2026-01-01T00:00:00Z" } });
    const second = await pushArtifact(client, repo, { artifactType: TYPE, subject, blobs: [{ mediaType: "application/json", bytes: Buffer.from('{"n":2}') }] });
    const found = await findArtifact(client, repo, subject.digest, TYPE);
    expect(found?.foundBy).toBe("tag-schema");
    expect(found?.descriptor.digest).toBe(second.digest);
    expect(first.digest).not.toBe(second.digest);
    const pulled = await pullArtifact(client, repo, second.digest);
    expect(pulled.manifest.subject?.digest).toBe(subject.digest);
    expect(pulled.manifest.artifactType).toBe(TYPE);
    const blob = await pulled.blob(pulled.manifest.layers[0] as never, 1024);
    expect(blob.toString()).toBe('{"n":2}');
    await expect(pulled.blob(pulled.manifest.layers[0] as never, 3)).rejects.toThrow(/at most 3 taken/);
  });

  it("a registry with nothing for an image costs one request once it is known to lack the referrers API", async () => {
    const repo = repositoryOf(parseReference(`${registry.host}/push/app:1`));
    // The access log is written after the response: let the previous test's requests land first.
    const from = (await registry.settledLog()).length;
    expect(await findArtifact(client, repo, `sha256:${"5".repeat(64)}`, TYPE)).toBeUndefined();
    const requests = (await registry.settledLog()).slice(from).match(/"(GET|HEAD) \/v2\//g) ?? [];
    expect(requests).toHaveLength(1);
  });

  it("tags a cluster artifact, pulls it by tag, and refuses what is not one", async () => {
    const repo = repositoryOf(parseReference(`${registry.host}/push/cluster:latest`));
    const bytes = Buffer.from('{"cluster":true}');
    await pushArtifact(client, repo, { artifactType: TYPE, blobs: [{ mediaType: "application/json", bytes }], tag: "latest" });
    const pulled = await pullArtifact(client, repo, "latest");
    expect(pulled.manifest.layers[0]?.digest).toBe(sha256Digest(bytes));
    const image = repositoryOf(parseReference(`${registry.host}/push/app:1`));
    await expect(pullArtifact(client, image, "1")).rejects.toThrow(/not an OCI artifact manifest/);
    await expect(pullArtifact(client, repo, "nope")).rejects.toThrow(/not found/);
  });
});
