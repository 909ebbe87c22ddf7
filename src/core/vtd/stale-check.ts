import type { PhysicalMemory } from '../hw/memory';
import type { StaleUse } from '../hw/types';
import { hexPad } from '../u64';
import { firstMismatch, type Verified } from './caches';

/**
 * Stale-use detection for one translation at a time: every cached entry the translation uses is compared
 * with the memory it was built from (only when memory was written since it was last verified); the first
 * mismatch is kept in `current` and reported with the result.
 */
export class StaleCheck {
  current: StaleUse | undefined = undefined;

  constructor(private readonly memory: PhysicalMemory) {}

  check(e: Verified, cache: StaleUse['cache']): void {
    if (e.verifiedAt === this.memory.writeCount) return;
    const at = firstMismatch(this.memory, e.deps);
    if (at < 0) {
      e.verifiedAt = this.memory.writeCount;
      return;
    }
    if (this.current) return;
    const a = e.deps[at]!;
    const cached = hexPad(e.deps[at + 1]! >>> 0, 8) + hexPad(e.deps[at + 2]! >>> 0, 8);
    const now = hexPad(this.memory.readHi(a), 8) + hexPad(this.memory.readLo(a), 8);
    this.current = {
      cache,
      entryAddress: '0x' + a.toString(16),
      cached: [cached],
      memory: [now],
      message: `the ${cache} entry used here was built from 0x${cached} at 0x${a.toString(16)}, but memory now holds 0x${now}: the table changed without the invalidation that would drop the cached copy`,
    };
  }
}
