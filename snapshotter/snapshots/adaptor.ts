// Field lookup for filters over snapshot Info (containerd metadata/adaptors.go):
// `name`, `parent`, `kind` (active|view|committed) and `labels.<key>`.
import type { Adaptor } from "../filters/filters.js";
import type { Info } from "./snapshotter.js";

export function snapshotAdaptor(info: Info): Adaptor {
  return (fieldpath) => {
    const [head, ...rest] = fieldpath;
    switch (head) {
      case "name":
        return { value: info.name, present: true };
      case "parent":
        return { value: info.parent, present: true };
      case "kind":
        return { value: info.kind, present: true };
      case "labels": {
        const v = rest.length > 0 ? info.labels[rest.join(".")] : undefined;
        return v === undefined ? { value: "", present: false } : { value: v, present: true };
      }
      default:
        return { value: "", present: false };
    }
  };
}
