// Wall-clock time in nanoseconds, as Go's time.Now() gives containerd. Date.now()
// has only milliseconds, and containerd's own snapshotter suite checks that a
// snapshot's `updated` lies between two nanosecond readings taken around the
// call, so a truncated time falls before the first. Node exposes no nanosecond
// wall clock; performance.timeOrigin is the wall time (microseconds) at which the
// monotonic performance.now() started, so their sum is the wall time with the
// monotonic clock's resolution. When the wall clock is stepped (NTP, an operator)
// the sum drifts from Date.now(); past a millisecond it is re-anchored.

/** Nanoseconds since the Unix epoch. */
export type UnixNanos = bigint;

const NS_PER_MS = 1_000_000n;

function anchorFromOrigin(): bigint {
  const origin = performance.timeOrigin;
  const whole = Math.floor(origin);
  return BigInt(whole) * NS_PER_MS + BigInt(Math.round((origin - whole) * 1e6));
}

let anchor = anchorFromOrigin();

export function nowNanos(): UnixNanos {
  let now = anchor + BigInt(Math.round(performance.now() * 1e6));
  const wallMs = BigInt(Date.now());
  const nowMs = now / NS_PER_MS;
  if (nowMs < wallMs - 1n || nowMs > wallMs + 1n) {
    // stepped: follow the wall clock, keeping the monotonic clock's sub-millisecond part
    anchor += wallMs * NS_PER_MS + (now % NS_PER_MS) - now;
    now = anchor + BigInt(Math.round(performance.now() * 1e6));
  }
  return now;
}
