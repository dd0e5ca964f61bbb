// Conversions between containerd's wire messages and augur's snapshot types.
import type { Info, Kind, Mount } from "../snapshots/snapshotter.js";
import { InvalidArgumentError } from "../errdefs/errors.js";
import type { UnixNanos } from "../util/wall-clock.js";
import type { PbInfo, PbKind, PbMount, PbTimestamp } from "./messages.js";

const TO_PB_KIND: Record<Kind, PbKind> = { view: "VIEW", active: "ACTIVE", committed: "COMMITTED" };
const FROM_PB_KIND: Record<PbKind, Kind | undefined> = { UNKNOWN: undefined, VIEW: "view", ACTIVE: "active", COMMITTED: "committed" };

const NS_PER_S = 1_000_000_000n;

export function toTimestamp(ns: UnixNanos): PbTimestamp {
  let seconds = ns / NS_PER_S;
  let nanos = ns % NS_PER_S;
  if (nanos < 0n) {
    seconds -= 1n;
    nanos += NS_PER_S;
  }
  return { seconds: Number(seconds), nanos: Number(nanos) };
}

export function fromTimestamp(t: PbTimestamp | null): UnixNanos {
  return t ? BigInt(t.seconds) * NS_PER_S + BigInt(t.nanos) : 0n;
}

export function fromInfo(info: Info): PbInfo {
  return {
    name: info.name,
    parent: info.parent,
    kind: TO_PB_KIND[info.kind],
    created_at: toTimestamp(info.created),
    updated_at: toTimestamp(info.updated),
    labels: info.labels,
  };
}

/** An Info from an Update request; kind may be left unset by the client, since it cannot change anyway. */
export function toInfo(pb: PbInfo | null): Info {
  if (!pb) throw new InvalidArgumentError("request has no snapshot info");
  return {
    name: pb.name,
    parent: pb.parent,
    kind: FROM_PB_KIND[pb.kind] ?? "active",
    created: fromTimestamp(pb.created_at),
    updated: fromTimestamp(pb.updated_at),
    labels: pb.labels ?? {},
  };
}

export function fromMounts(mounts: Mount[]): PbMount[] {
  return mounts.map((m) => ({ type: m.type, source: m.source, target: m.target ?? "", options: m.options }));
}
