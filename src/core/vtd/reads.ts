import type { PhysicalMemory } from '../hw/memory';

/**
 * `qwords` 64-bit words at `addr`, as 32-bit halves, low half first (the layout structures.ts decodes). An
 * entry or descriptor never crosses a page, so this is one page lookup. `into`: reused words to fill instead
 * of a new array (for entries that go into no cache).
 */
export function readWords(mem: PhysicalMemory, addr: number, qwords: number): number[];
export function readWords(mem: PhysicalMemory, addr: number, qwords: number, into: Uint32Array | undefined): ArrayLike<number>;
export function readWords(mem: PhysicalMemory, addr: number, qwords: number, into?: Uint32Array): ArrayLike<number> {
  const n = qwords * 2;
  const out = into ?? new Array<number>(n);
  const page = mem.pageForRead(addr);
  const at = (addr & 0xfff) >>> 2;
  for (let i = 0; i < n; i++) out[i] = page === undefined ? 0 : page[at + i]!;
  return out;
}

/**
 * Whether the unit can read `addr`: below the host address width (`hawLimit` = 2^HAW) and, in a memory with
 * holes, backed by something.
 */
export function readableAt(mem: PhysicalMemory, hawLimit: number, addr: number): boolean {
  return addr < hawLimit && (!mem.hasHoles || mem.accessible(addr));
}
