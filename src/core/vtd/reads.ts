import type { PhysicalMemory } from '../hw/memory';

/** `qwords` 64-bit words at `addr`, as 32-bit halves, low half first (the layout structures.ts decodes). */
export function readWords(mem: PhysicalMemory, addr: number, qwords: number): number[] {
  const out = new Array<number>(qwords * 2);
  for (let i = 0; i < qwords; i++) {
    out[i * 2] = mem.readLo(addr + i * 8);
    out[i * 2 + 1] = mem.readHi(addr + i * 8);
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
