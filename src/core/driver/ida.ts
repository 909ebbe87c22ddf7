import { fail } from './errors';

/**
 * The kernel's IDA: hands out the lowest free integer in [min, max]. Deterministic, as the model must be.
 * A bitmap in 32-bit words keeps 2^20 PASIDs at 128 KiB.
 */
export class Ida {
  private readonly used: Uint32Array;
  private count = 0;

  constructor(
    readonly min: number,
    readonly max: number,
    private readonly what: string,
  ) {
    if (max < min) throw new RangeError(`${what}: empty range [${min}, ${max}]`);
    this.used = new Uint32Array(Math.ceil((max + 1) / 32));
  }

  has(id: number): boolean {
    return id >= 0 && id <= this.max && ((this.used[id >>> 5]! >>> (id & 31)) & 1) === 1;
  }

  /** Lowest free ID in [lo, hi] (within [min, max]); ENOSPC when there is none. */
  alloc(lo = this.min, hi = this.max): number {
    const from = Math.max(lo, this.min);
    const to = Math.min(hi, this.max);
    for (let id = from; id <= to; ) {
      const word = this.used[id >>> 5]!;
      if (word === 0xffff_ffff && (id & 31) === 0) {
        id += 32;
        continue;
      }
      if (((word >>> (id & 31)) & 1) === 0) {
        this.take(id);
        return id;
      }
      id++;
    }
    return fail('ENOSPC', `no free ${this.what} in [${from}, ${to}]`);
  }

  /** Claims a specific ID; EBUSY if it is taken, ERANGE if outside the range. */
  take(id: number): void {
    if (id < this.min || id > this.max) fail('ERANGE', `${this.what} ${id} is outside [${this.min}, ${this.max}]`);
    if (this.has(id)) fail('EBUSY', `${this.what} ${id} is already allocated`);
    this.used[id >>> 5]! |= 1 << (id & 31);
    this.count++;
  }

  free(id: number): void {
    if (!this.has(id)) fail('EINVAL', `${this.what} ${id} is not allocated`);
    this.used[id >>> 5]! &= ~(1 << (id & 31));
    this.count--;
  }

  get size(): number {
    return this.count;
  }

  snapshot(): Uint32Array {
    return this.used.slice();
  }

  restore(s: Uint32Array, count: number): void {
    this.used.set(s);
    this.count = count;
  }
}
