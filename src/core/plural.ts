/**
 * The word that agrees with `count`: `one` for 1, else `many` (`1 of them mentions`, `3 of them mention`;
 * `was`/`were`, `it`/`them`). With plural below, the one way every layer words a count.
 */
export function agree(count: number, one: string, many: string): string {
  return count === 1 ? one : many;
}

/** `1 line`, `2 lines`, `1 PASID entry`, `3 PASID entries`. */
export function plural(count: number, one: string, many = one + 's'): string {
  return `${count} ${agree(count, one, many)}`;
}
