// Grouping verification units into Range requests. Units are numbered in blob
// order; a run of adjacent ones is one request.

export type UnitBounds = (id: number) => { start: number; end: number };

/**
 * Splits sorted unit ids into runs of adjacent units, each at most `maxBytes`
 * long (a unit longer than that runs alone), so no waiting read joins a fetch
 * much longer than the unit it needs.
 */
export function adjacentRuns(ids: readonly number[], bounds: UnitBounds, maxBytes: number): number[][] {
  const runs: number[][] = [];
  let run: number[] = [];
  for (const id of ids) {
    const prev = run[run.length - 1];
    const b = bounds(id);
    // gzip spans share the byte their boundary bit falls in, and eStargz chunks may share a gzip
    // member: touching or overlapping is adjacent
    const adjacent = prev !== undefined && id === prev + 1 && b.start <= bounds(prev).end;
    if (run.length && (!adjacent || b.end - bounds(run[0] as number).start > maxBytes)) {
      runs.push(run);
      run = [];
    }
    run.push(id);
  }
  if (run.length) runs.push(run);
  return runs;
}

/**
 * Orders `ids` (most useful first) into requests: runs of adjacent units,
 * each at most `maxBytes` long, ordered by their most useful member.
 */
export function rankedRuns(ids: readonly number[], bounds: UnitBounds, maxBytes: number): number[][] {
  const rank = new Map<number, number>();
  ids.forEach((id, k) => {
    if (!rank.has(id)) rank.set(id, k);
  });
  const runs = adjacentRuns([...rank.keys()].sort((a, b) => a - b), bounds, maxBytes);
  const best = (run: number[]): number => Math.min(...run.map((id) => rank.get(id) as number));
  return runs.sort((a, b) => best(a) - best(b));
}

/** Ranges one request asks for at most (its Range header grows with each). */
export const MAX_RANGES_PER_REQUEST = 64;

/**
 * Runs in their ranked order, packed into requests: consecutive runs
 * together, at most `maxBytes` and `maxRanges` runs a request.
 */
export function packedRuns(runs: readonly number[][], bounds: UnitBounds, maxBytes: number, maxRanges = MAX_RANGES_PER_REQUEST): number[][][] {
  const out: number[][][] = [];
  let request: number[][] = [];
  let bytes = 0;
  for (const run of runs) {
    const n = bounds(run[run.length - 1] as number).end - bounds(run[0] as number).start;
    if (request.length && (bytes + n > maxBytes || request.length >= maxRanges)) {
      out.push(request);
      request = [];
      bytes = 0;
    }
    request.push(run);
    bytes += n;
  }
  if (request.length) out.push(request);
  return out;
}

/**
 * The runs of one request, with runs whose bytes meet or overlap (gzip spans
 * share their boundary byte, eStargz chunks their gzip member) joined into
 * one, so no range of the request overlaps another; otherwise in the order given.
 */
export function disjointRuns(runs: readonly number[][], bounds: UnitBounds): number[][] {
  const span = (ids: readonly number[]): [number, number] => [bounds(ids[0] as number).start, Math.max(...ids.map((id) => bounds(id).end))];
  const meet = (a: [number, number], b: [number, number]): boolean => a[0] <= b[1] && b[0] <= a[1];
  const out: number[][] = [];
  for (const run of runs) {
    let joined = [...run];
    // a join can reach a run it did not meet before: join until nothing meets
    for (let k = out.findIndex((o) => meet(span(o), span(joined))); k >= 0; k = out.findIndex((o) => meet(span(o), span(joined)))) {
      joined = [...new Set([...(out[k] as number[]), ...joined])].sort((a, b) => a - b);
      out.splice(k, 1);
    }
    out.push(joined);
  }
  return out;
}
