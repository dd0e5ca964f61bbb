import { describe, expect, it } from "vitest";
import { parseFilters, parseSelectors } from "../../../snapshotter/filters/filters.js";
import { snapshotAdaptor } from "../../../snapshotter/snapshots/adaptor.js";
import type { Info } from "../../../snapshotter/snapshots/snapshotter.js";
import { isInvalidArgument } from "../../../snapshotter/errdefs/errors.js";

const info = (name: string, kind: Info["kind"], parent = "", labels: Record<string, string> = {}): Info => ({
  name, kind, parent, labels, created: 0n, updated: 0n,
});

describe("parseSelectors", () => {
  it.each([
    ["name==foo", [{ fieldpath: ["name"], operator: "==", value: "foo" }]],
    ["name!=foo", [{ fieldpath: ["name"], operator: "!=", value: "foo" }]],
    ["labels.l", [{ fieldpath: ["labels", "l"], operator: "present", value: "" }]],
    ['labels."containerd.io/gc.root"==x', [{ fieldpath: ["labels", "containerd.io/gc.root"], operator: "==", value: "x" }]],
    ['parent!=""', [{ fieldpath: ["parent"], operator: "!=", value: "" }]],
    ["name~=/^a.*$/", [{ fieldpath: ["name"], operator: "~=", value: "^a.*$" }]],
    [" kind == active , name==a ", [{ fieldpath: ["kind"], operator: "==", value: "active" }, { fieldpath: ["name"], operator: "==", value: "a" }]],
    ['name=="with \\"quote\\" and \\n"', [{ fieldpath: ["name"], operator: "==", value: 'with "quote" and \n' }]],
    ["labels.a.b==c", [{ fieldpath: ["labels", "a", "b"], operator: "==", value: "c" }]],
    ["name==sha256:abc/def", [{ fieldpath: ["name"], operator: "==", value: "sha256:abc/def" }]],
    ["", []],
  ])("%s", (input, expected) => {
    expect(parseSelectors(input)).toEqual(expected);
  });

  it.each([
    ["name==", /expected value at position 6/],
    [",", /expected field at position 0/],
    ["name==a,", /expected field/],
    ['"open', /quoted literal not terminated/],
    ["name=~x", /unknown operator "=~"/],
    ["name~=[", /bad regular expression/],
    ['name=="\\q"', /illegal escape sequence/],
  ])("rejects %s", (input, message) => {
    let err: unknown;
    try {
      parseSelectors(input);
    } catch (e) {
      err = e;
    }
    expect(isInvalidArgument(err)).toBe(true);
    expect((err as Error).message).toMatch(message);
  });
});

describe("parseFilters over snapshots", () => {
  const snaps = [
    info("p", "committed", "", { l: "1" }),
    info("a", "active", "p", { l: "2", "containerd.io/snapshot.ref": "sha256:x" }),
    info("v", "view", "p"),
  ];
  const names = (filters: string[]) => snaps.filter((s) => parseFilters(filters)(snapshotAdaptor(s))).map((s) => s.name);

  it("ORs filter strings and ANDs selectors", () => {
    expect(names([])).toEqual(["p", "a", "v"]);
    expect(names(["name==p", "name==v"])).toEqual(["p", "v"]);
    expect(names(["kind==active,parent==p"])).toEqual(["a"]);
    expect(names(['labels."containerd.io/snapshot.ref"==sha256:x,parent==p'])).toEqual(["a"]);
    expect(names(["labels.l"])).toEqual(["p", "a"]);
    expect(names(["labels.l!=1"])).toEqual(["a", "v"]);
    expect(names(['parent!=""'])).toEqual(["a", "v"]);
    expect(names(["unknownfield==x"])).toEqual([]);
    expect(names(["name~=^[av]$"])).toEqual(["a", "v"]);
  });
});
