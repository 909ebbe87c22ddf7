/** `1 line`, `2 lines`, `1 PASID entry`, `3 PASID entries`: the one way every layer words a count. */
export function plural(count: number, one: string, many = one + 's'): string {
  return `${count} ${count === 1 ? one : many}`;
}
