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
