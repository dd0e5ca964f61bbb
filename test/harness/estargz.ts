// Test images in eStargz, converted the way users do it: the plain image is
// fetched into a namespace of its own, converted with `ctr-remote images
// convert --estargz --oci`, and pushed to the test registry.
import { run } from "./processes.js";
import type { Containerd } from "./containerd.js";

const NAMESPACE = ["-n", "convert"];
const PUSH_ATTEMPTS = 3;

/** Converts the image at `plainRef` (already in the registry) to eStargz and pushes it as `estargzRef`. */
export async function pushEstargzOf(containerd: Containerd, plainRef: string, estargzRef: string): Promise<void> {
  await containerd.ctrOk([...NAMESPACE, "content", "fetch", "--plain-http", plainRef], 120_000);
  const converted = await run("ctr-remote", ["--address", containerd.address, ...NAMESPACE, "images", "convert", "--estargz", "--oci", plainRef, estargzRef], { timeoutMs: 120_000 });
  if (converted.code !== 0) throw new Error(`ctr-remote convert ${plainRef}: ${converted.stderr}`);
  // A push is safe to repeat (blobs already there are skipped). It is retried
  // because ctr's read stream from containerd was once cut mid-blob on a
  // loaded CI machine ("rpc error: code = Internal desc = unexpected EOF"),
  // which is setup failing, not what any test checks.
  let last = "";
  for (let attempt = 1; attempt <= PUSH_ATTEMPTS; attempt++) {
    const pushed = await containerd.ctr([...NAMESPACE, "images", "push", "--plain-http", estargzRef], 60_000);
    if (pushed.code === 0) return;
    last = pushed.stderr;
  }
  throw new Error(`ctr images push ${estargzRef} failed ${PUSH_ATTEMPTS} times, last: ${last}`);
}

/** The digest of the eStargz image's manifest, as converted into the `convert` namespace. */
export async function estargzManifestDigest(containerd: Containerd, estargzRef: string): Promise<string> {
  const line = (await containerd.ctrOk([...NAMESPACE, "images", "ls"])).split("\n").find((l) => l.startsWith(`${estargzRef} `));
  const digest = line?.split(/\s+/)[2];
  if (!digest) throw new Error(`${estargzRef} is not in the convert namespace`);
  return digest;
}

/** The converted image's manifest, read from containerd's content store. */
export async function estargzManifest(containerd: Containerd, estargzRef: string): Promise<{ layers: { digest: string; size: number; annotations?: Record<string, string> }[] }> {
  return JSON.parse(await containerd.ctrOk([...NAMESPACE, "content", "get", await estargzManifestDigest(containerd, estargzRef)])) as {
    layers: { digest: string; size: number; annotations?: Record<string, string> }[];
  };
}
