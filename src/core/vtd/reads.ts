import type { PhysicalMemory } from '../hw/memory';

/**
 * `qwords` 64-bit words at `addr`, as 32-bit halves, low half first (the layout structures.ts decodes). An
 * entry or descriptor never crosses a page, so this is one page lookup.
 */
export function readWords(mem: PhysicalMemory, addr: number, qwords: number): number[] {
  const out = new Array<number>(qwords * 2);
  const page = mem.pageForRead(addr);
  const at = (addr & 0xfff) >>> 2;
  for (let i = 0; i < out.length; i++) out[i] = page === undefined ? 0 : page[at + i]!;
  return out;
}

/**
 * The same into reused words (an entry that goes into no cache): nothing allocated. Its own function, so
 * that its stores see only typed arrays.
 */
export function readWordsInto(mem: PhysicalMemory, addr: number, out: Uint32Array): Uint32Array {
  const page = mem.pageForRead(addr);
  if (page === undefined) return out.fill(0);
  const at = (addr & 0xfff) >>> 2;
  // Straight-line copies by pairs: a loop over a typed array costs about twice as much per word here.
  for (let i = 0; i < out.length; i += 2) {
    out[i] = page[at + i]!;
    out[i + 1] = page[at + i + 1]!;
  }
  return out;
}

/**
 * Whether the unit can read `addr`: below the host address width (`hawLimit` = 2^HAW) and, in a memory with
 * holes, backed by something.
 */
export function readableAt(mem: PhysicalMemory, hawLimit: number, addr: number): boolean {
  return addr < hawLimit && (!mem.hasHoles || mem.accessible(addr));
}
