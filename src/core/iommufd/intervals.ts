/**
 * Closed intervals [start, last] of the 64-bit IOVA space, as the kernel's interval trees hold them
 * (areas, reserved ranges, allowed ranges). IOVAs reach ULONG_MAX, beyond what a number holds exactly, so
 * they are bigints. The sets are small (a handful of ranges per IOAS), so sorted arrays do.
 */

export interface IovaRange {
  readonly start: bigint;
  readonly last: bigint;
}

export function intersects(r: IovaRange, start: bigint, last: bigint): boolean {
  return r.start <= last && start <= r.last;
}

/** The first range of `list` (in start order) that meets [start, last]. */
export function firstIn<T extends IovaRange>(list: readonly T[], start: bigint, last: bigint): T | undefined {
  let best: T | undefined;
  for (const r of list) if (intersects(r, start, last) && (best === undefined || r.start < best.start)) best = r;
  return best;
}

/** Ranges of `list` that meet [start, last], in start order. */
export function allIn<T extends IovaRange>(list: readonly T[], start: bigint, last: bigint): T[] {
  return list.filter((r) => intersects(r, start, last)).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
}

/** The union of `used` clipped to [lo, hi], merged into disjoint spans (interval_tree_span_iter's used spans). */
export function usedSpans(used: readonly IovaRange[], lo: bigint, hi: bigint): IovaRange[] {
  const out: { start: bigint; last: bigint }[] = [];
  for (const r of allIn(used, lo, hi)) {
    const start = r.start < lo ? lo : r.start;
    const last = r.last > hi ? hi : r.last;
    const prev = out[out.length - 1];
    if (prev && start <= prev.last + 1n) {
      if (last > prev.last) prev.last = last;
    } else out.push({ start, last });
  }
  return out;
}

/** What `used` leaves free in [lo, hi] (interval_tree_span_iter's holes). */
export function holes(used: readonly IovaRange[], lo: bigint, hi: bigint): IovaRange[] {
  const out: IovaRange[] = [];
  let cur = lo;
  for (const s of usedSpans(used, lo, hi)) {
    if (s.start > cur) out.push({ start: cur, last: s.start - 1n });
    cur = s.last + 1n;
  }
  if (cur <= hi) out.push({ start: cur, last: hi });
  return out;
}

export function roundupPowerOfTwo(n: bigint): bigint {
  let p = 1n;
  while (p < n) p <<= 1n;
  return p;
}

/** 1 << __ffs(n): the lowest set bit (n > 0). */
export function lowestSetBit(n: bigint): bigint {
  return n & -n;
}
