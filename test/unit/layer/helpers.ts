// Test fixtures for layer indexes: compressible pseudo-random data, blob
// sources that count what they are asked for, and tar entries layerTar does
// not write (xattrs, devices, fifos).
import { createHash } from "node:crypto";
import { compress as zstdCompress } from "zstd-napi";
import type { TarIndex } from "../../../snapshotter/layer/tar-index.js";
import * as tar from "tar-stream";
import type { BlobSource } from "../../../snapshotter/fetch/blob-source.js";

export const sha256 = (b: Buffer): string => "sha256:" + createHash("sha256").update(b).digest("hex");

/** `size` bytes of seeded pseudo-random text from a small alphabet: compresses to roughly half. */
export function noise(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = 97 + ((x >>> 0) % 20);
  }
  return out;
}

export interface CountingSource extends BlobSource {
  requested: number;
  calls: { offset: number; length: number }[];
}

/** A BlobSource over `blob` that records every range asked for. */
export function countingSource(blob: Buffer): CountingSource {
  const src: CountingSource = {
    size: blob.length,
    requested: 0,
    calls: [],
    read: async (offset, length) => {
      src.requested += length;
      src.calls.push({ offset, length });
      return blob.subarray(offset, offset + length);
    },
  };
  return src;
}

/** The blob in `chunk`-sized pieces, as a network stream delivers it. */
export async function* chunks(blob: Buffer, chunk = 64 << 10): AsyncGenerator<Buffer> {
  for (let i = 0; i < blob.length; i += chunk) yield blob.subarray(i, i + chunk);
}

export interface RawEntry {
  header: Partial<tar.Header> & { name: string; pax?: Record<string, string> };
  content?: Buffer;
}

/** A tar stream of raw tar-stream headers (no end-of-archive blocks, to append to another tar). */
export async function rawTar(entries: RawEntry[]): Promise<Buffer> {
  const pack = tar.pack();
  const out: Buffer[] = [];
  pack.on("data", (c: unknown) => out.push(c as Buffer));
  const done = new Promise<void>((resolve, reject) => {
    pack.on("end", resolve);
    pack.on("error", reject);
  });
  for (const e of entries) pack.entry(e.header, e.content ?? Buffer.alloc(0));
  pack.finalize();
  await done;
  const all = Buffer.concat(out);
  return all.subarray(0, all.length - 1024);
}

/** Concatenates tar streams into one archive: drops each one's end-of-archive blocks, ends with two zero blocks. */
export function joinTars(...parts: Buffer[]): Buffer {
  const strip = (b: Buffer): Buffer => {
    const tail = b.subarray(Math.max(0, b.length - 1024));
    return tail.length === 1024 && tail.every((x) => x === 0) ? b.subarray(0, b.length - 1024) : b;
  };
  return Buffer.concat([...parts.map(strip), Buffer.alloc(1024)]);
}

/** `index` as an augur before index format v4 wrote it (AUGURIX3: cells as hex pairs in the JSON), to test that it is still read. */
export function serializeTarIndexV3(index: TarIndex): Buffer {
  const windows = index.spans.map((s) => (s.window ? zstdCompress(s.window) : undefined));
  const json = Buffer.from(JSON.stringify({
    ...index,
    cells: index.cells?.map((c) => [c.digest.slice("sha256:".length), c.reach]),
    spans: index.spans.map((s, i) => ({ ...s, window: undefined, windowLength: windows[i]?.length ?? -1 })),
    entries: index.entries.map((e) => ({ ...e, xattrs: Object.fromEntries(Object.entries(e.xattrs).map(([k, v]) => [k, v.toString("base64")])) })),
  }));
  const z = zstdCompress(json);
  const length = Buffer.alloc(4);
  length.writeUInt32BE(z.length);
  return Buffer.concat([Buffer.from("AUGURIX3"), length, z, ...windows.filter((w): w is Buffer => w !== undefined)]);
}
