// Mounting what the snapshotter returns, as containerd's mount.All does.
import { runOk, run } from "./processes.js";
import type { PbMount } from "./snapshots-client.js";

export async function mountAll(mounts: PbMount[], target: string): Promise<void> {
  for (const m of mounts) {
    if (m.type === "bind") {
      const ro = m.options.includes("ro");
      await runOk("mount", ["--rbind", m.source, target]);
      if (ro) await runOk("mount", ["-o", "remount,bind,ro", target]);
    } else {
      await runOk("mount", ["-t", m.type, m.source, target, "-o", m.options.join(",")]);
    }
  }
}

export async function unmount(target: string): Promise<void> {
  const r = await run("umount", [target]);
  if (r.code !== 0) await run("umount", ["-l", target]);
}
