// Builds small OCI images locally (no Docker engine here): layers are tar
// streams written with tar-stream, compressed with gzip or zstd, and laid out
// as an OCI image layout directory that `skopeo copy oci:DIR docker://...` pushes.
import { createHash } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as tar from "tar-stream";
import { compress as zstdCompress } from "zstd-napi";

export type LayerEntry =
  | { type: "file"; path: string; content: string | Buffer; mode?: number; uid?: number; gid?: number; xattrs?: Record<string, string> }
  | { type: "dir"; path: string; mode?: number; uid?: number; gid?: number }
  | { type: "symlink"; path: string; target: string }
  | { type: "link"; path: string; target: string }
  /** overlay/OCI whiteout: hides `path` from lower layers. */
  | { type: "whiteout"; path: string }
  /** Opaque marker: hides everything lower layers had inside directory `path`. */
  | { type: "opaque"; path: string };

export type Compression = "gzip" | "zstd" | "none";

export interface ImageSpec {
  layers: LayerEntry[][];
  cmd?: string[];
  env?: string[];
  workingDir?: string;
  compression?: Compression;
}

export interface BuiltImage {
  dir: string;
  manifestDigest: string;
  layerDigests: string[];
  diffIds: string[];
  /** Compressed size of each layer blob. */
  layerSizes: number[];
}

const MTIME = new Date("2024-01-01T00:00:00Z");
const sha256 = (b: Buffer): string => "sha256:" + createHash("sha256").update(b).digest("hex");

export async function layerTar(entries: LayerEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on("data", (c: unknown) => chunks.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  const strip = (p: string): string => p.replace(/^\/+/, "");
  const whiteoutName = (p: string): string => {
    const parts = strip(p).split("/");
    const base = parts.pop() ?? "";
    return [...parts, `.wh.${base}`].join("/");
  };
  for (const e of entries) {
    const common = { mtime: MTIME };
    switch (e.type) {
      case "file": {
        const content = typeof e.content === "string" ? Buffer.from(e.content) : e.content;
        const pax = e.xattrs ? Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [`SCHILY.xattr.${k}`, v])) : undefined;
        pack.entry({ ...common, name: strip(e.path), mode: e.mode ?? 0o644, uid: e.uid ?? 0, gid: e.gid ?? 0, size: content.length, ...(pax ? { pax } : {}) }, content);
        break;
      }
      case "dir":
        pack.entry({ ...common, name: strip(e.path), type: "directory", mode: e.mode ?? 0o755, uid: e.uid ?? 0, gid: e.gid ?? 0 });
        break;
      case "symlink":
        pack.entry({ ...common, name: strip(e.path), type: "symlink", linkname: e.target, mode: 0o777 });
        break;
      case "link":
        pack.entry({ ...common, name: strip(e.path), type: "link", linkname: strip(e.target) });
        break;
      case "whiteout":
        pack.entry({ ...common, name: whiteoutName(e.path), mode: 0o644, size: 0 }, Buffer.alloc(0));
        break;
      case "opaque":
        pack.entry({ ...common, name: `${strip(e.path)}/.wh..wh..opq`, mode: 0o644, size: 0 }, Buffer.alloc(0));
        break;
    }
  }
  pack.finalize();
  await done;
  return Buffer.concat(chunks);
}

/** A base layer with the static busybox and a symlink per applet, like the busybox image. */
export function busyboxLayer(): LayerEntry[] {
  const busybox = readFileSync("/bin/busybox");
  const applets = execFileSync("/bin/busybox", ["--list"], { encoding: "utf8" }).split("\n").filter((a) => a && a !== "busybox");
  return [
    { type: "dir", path: "bin" },
    { type: "dir", path: "etc" },
    { type: "dir", path: "tmp", mode: 0o1777 },
    { type: "dir", path: "proc" },
    { type: "dir", path: "sys" },
    { type: "dir", path: "dev" },
    { type: "file", path: "bin/busybox", content: busybox, mode: 0o755 },
    ...applets.map((a): LayerEntry => ({ type: "symlink", path: `bin/${a}`, target: "busybox" })),
    { type: "file", path: "etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n" },
    { type: "file", path: "etc/group", content: "root:x:0:\nnobody:x:65534:\n" },
  ];
}

function compressLayer(tarball: Buffer, compression: Compression): { blob: Buffer; mediaType: string } {
  switch (compression) {
    case "gzip":
      return { blob: gzipSync(tarball), mediaType: "application/vnd.oci.image.layer.v1.tar+gzip" };
    case "zstd":
      return { blob: zstdCompress(tarball), mediaType: "application/vnd.oci.image.layer.v1.tar+zstd" };
    case "none":
      return { blob: tarball, mediaType: "application/vnd.oci.image.layer.v1.tar" };
  }
}

/** Writes `b` into the OCI layout at `dir` (blobs/sha256/<hex>) and returns its digest. */
export function putBlob(dir: string, b: Buffer): string {
  const d = sha256(b);
  mkdirSync(join(dir, "blobs", "sha256"), { recursive: true });
  writeFileSync(join(dir, "blobs", "sha256", d.slice(7)), b);
  return d;
}

/** Completes an OCI layout whose layer blobs are in place: config, manifest, index.json tagged `tag`. Returns the manifest digest. */
export function writeImageLayout(dir: string, config: Buffer, layers: { mediaType: string; digest: string; size: number; annotations?: Record<string, string> }[], tag: string): string {
  const configDesc = { mediaType: "application/vnd.oci.image.config.v1+json", digest: putBlob(dir, config), size: config.length };
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json", config: configDesc, layers }));
  const manifestDigest = putBlob(dir, manifest);
  writeFileSync(join(dir, "oci-layout"), JSON.stringify({ imageLayoutVersion: "1.0.0" }));
  writeFileSync(
    join(dir, "index.json"),
    JSON.stringify({
      schemaVersion: 2,
      manifests: [{ mediaType: "application/vnd.oci.image.manifest.v1+json", digest: manifestDigest, size: manifest.length, annotations: { "org.opencontainers.image.ref.name": tag } }],
    }),
  );
  return manifestDigest;
}

/** Writes an OCI image layout for `spec` into `dir`, tagged `tag`. */
export async function buildImage(dir: string, spec: ImageSpec, tag = "latest"): Promise<BuiltImage> {
  const put = (b: Buffer): string => putBlob(dir, b);
  const layers: { mediaType: string; digest: string; size: number }[] = [];
  const diffIds: string[] = [];
  for (const entries of spec.layers) {
    const tarball = await layerTar(entries);
    diffIds.push(sha256(tarball));
    const { blob, mediaType } = compressLayer(tarball, spec.compression ?? "gzip");
    layers.push({ mediaType, digest: put(blob), size: blob.length });
  }
  const config = Buffer.from(
    JSON.stringify({
      architecture: "amd64",
      os: "linux",
      created: MTIME.toISOString(),
      config: { Cmd: spec.cmd ?? ["/bin/sh"], Env: spec.env ?? ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], WorkingDir: spec.workingDir ?? "/" },
      rootfs: { type: "layers", diff_ids: diffIds },
      history: diffIds.map(() => ({ created: MTIME.toISOString(), created_by: "augur image builder" })),
    }),
  );
  const manifestDigest = writeImageLayout(dir, config, layers, tag);
  return { dir, manifestDigest, layerDigests: layers.map((l) => l.digest), diffIds, layerSizes: layers.map((l) => l.size) };
}

/** Pushes an OCI layout to a registry reference like `127.0.0.1:5000/demo:latest` (plain HTTP). */
export function pushImage(image: BuiltImage, ref: string, tag = "latest"): void {
  execFileSync("skopeo", ["copy", "--quiet", "--dest-tls-verify=false", "--preserve-digests", `oci:${image.dir}:${tag}`, `docker://${ref}`], { stdio: ["ignore", "ignore", "pipe"] });
}
