// Wire shapes of containerd's snapshots API as proto-loader decodes them
// (snake_case fields, enums as strings, int64 as number, defaults filled in).

export interface PbTimestamp {
  seconds: number;
  nanos: number;
}

export type PbKind = "UNKNOWN" | "VIEW" | "ACTIVE" | "COMMITTED";

export interface PbInfo {
  name: string;
  parent: string;
  kind: PbKind;
  created_at: PbTimestamp | null;
  updated_at: PbTimestamp | null;
  labels: Record<string, string>;
}

export interface PbMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface PbSnapshotRequest {
  snapshotter: string;
  key: string;
  parent: string;
  labels: Record<string, string>;
}

export interface PbKeyRequest {
  snapshotter: string;
  key: string;
}

export interface PbCommitRequest {
  snapshotter: string;
  name: string;
  key: string;
  labels: Record<string, string>;
}

export interface PbUpdateRequest {
  snapshotter: string;
  info: PbInfo | null;
  update_mask: { paths: string[] } | null;
}

export interface PbListRequest {
  snapshotter: string;
  filters: string[];
}
