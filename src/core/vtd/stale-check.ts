import type { PhysicalMemory } from '../hw/memory';
import type { StaleUse } from '../hw/types';
import { hexPad } from '../u64';
import { type Deps, firstMismatch, type Verified } from './caches';

/**
 * Stale-use detection for one translation at a time: every cached entry the translation uses is compared
 * with the memory it was built from (only when memory was written since it was last verified); the first
 * mismatch is kept in `current` and reported with the result.
 */
export class StaleCheck {
  current: StaleUse | undefined = undefined;

  constructor(private readonly memory: PhysicalMemory) {}

  check(e: Verified, cache: StaleUse['cache']): void {
    if (e.verifiedAt !== this.memory.writeCount && this.verify(e.deps, cache)) e.verifiedAt = this.memory.writeCount;
  }

  /**
   * Compares an entry's dependencies with memory: true when they all match (the caller marks the entry
   * verified at the current write count); on a mismatch records the first stale use and returns false.
   */
  verify(deps: Deps, cache: StaleUse['cache']): boolean {
    const at = firstMismatch(this.memory, deps);
    if (at < 0) return true;
    if (this.current) return false;
    const a = deps[at]!;
    const cached = hexPad(deps[at + 1]! >>> 0, 8) + hexPad(deps[at + 2]! >>> 0, 8);
    const now = hexPad(this.memory.readHi(a), 8) + hexPad(this.memory.readLo(a), 8);
    this.current = {
      cache,
      entryAddress: '0x' + a.toString(16),
      cached: [cached],
      memory: [now],
      message: `the ${cache} entry used here was built from 0x${cached} at 0x${a.toString(16)}, but memory now holds 0x${now}: the table changed without the invalidation that would drop the cached copy`,
    };
    return false;
  }
}
