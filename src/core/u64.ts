/**
 * 64-bit values without BigInt. Hardware structures are arrays of 64-bit words; JavaScript numbers hold
 * only 53 bits exactly, and BigInt is far too slow for page walks. Inside the model a 64-bit word is two
 * unsigned 32-bit halves (hi, lo). Addresses of at most 52 bits (every physical address, every page frame
 * number) are also exact as plain numbers, and the model uses them so where that is safe.
 * Across module and process boundaries a 64-bit value is a `U64` or a hex string, never a lossy number.
 */

const TWO_32 = 0x1_0000_0000;

/** An immutable unsigned 64-bit value. */
export class U64 {
  static readonly ZERO = new U64(0, 0);

  readonly hi: number;
  readonly lo: number;

  constructor(hi: number, lo: number) {
    this.hi = hi >>> 0;
    this.lo = lo >>> 0;
  }

  /** From a non-negative safe integer (addresses, sizes); throws on anything it cannot represent exactly. */
  static fromNumber(n: number): U64 {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`not an exact unsigned integer: ${n}`);
    return new U64(Math.floor(n / TWO_32), n >>> 0);
  }

  /** From `0x...` or bare hex, with optional `_` separators; undefined if it is not hex or wider than 64 bits. */
  static fromHex(text: string): U64 | undefined {
    const digits = text.replace(/^0[xX]/, '').replace(/_/g, '');
    if (!/^[0-9a-fA-F]{1,16}$/.test(digits.replace(/^0+(?=.)/, ''))) return undefined;
    const d = digits.replace(/^0+(?=.)/, '').padStart(16, '0');
    return new U64(parseInt(d.slice(0, 8), 16), parseInt(d.slice(8), 16));
  }

  static fromBigInt(v: bigint): U64 {
    const m = BigInt.asUintN(64, v);
    return new U64(Number(m >> 32n), Number(m & 0xffff_ffffn));
  }

  toBigInt(): bigint {
    return (BigInt(this.hi) << 32n) | BigInt(this.lo);
  }

  /** Exact as a number only when below 2^53; check with isSafe(). */
  toNumber(): number {
    return this.hi * TWO_32 + this.lo;
  }

  isSafe(): boolean {
    return this.hi < 0x20_0000;
  }

  isZero(): boolean {
    return this.hi === 0 && this.lo === 0;
  }

  equals(o: U64): boolean {
    return this.hi === o.hi && this.lo === o.lo;
  }

  /** Lowercase hex, zero-padded to `width` digits (16 by default), without a prefix. */
  toHex(width = 16): string {
    const s = this.hi === 0 ? this.lo.toString(16) : this.hi.toString(16) + this.lo.toString(16).padStart(8, '0');
    return s.padStart(width, '0');
  }

  /** `0x` + minimal lowercase hex, the way the kernel's `0x%llx` prints. */
  toString(): string {
    return '0x' + this.toHex(1);
  }

  toJSON(): string {
    return this.toString();
  }

  bit(n: number): boolean {
    return bit(this.hi, this.lo, n);
  }

  field(msb: number, lsb: number): number {
    return field(this.hi, this.lo, msb, lsb);
  }

  withField(msb: number, lsb: number, value: number): U64 {
    const [hi, lo] = setField(this.hi, this.lo, msb, lsb, value);
    return new U64(hi, lo);
  }

  or(o: U64): U64 {
    return new U64(this.hi | o.hi, this.lo | o.lo);
  }

  and(o: U64): U64 {
    return new U64(this.hi & o.hi, this.lo & o.lo);
  }
}

/** Bit n (0..63) of the 64-bit word (hi, lo). */
export function bit(hi: number, lo: number, n: number): boolean {
  return n < 32 ? ((lo >>> n) & 1) === 1 : ((hi >>> (n - 32)) & 1) === 1;
}

/** Bits [msb:lsb] of (hi, lo) as a number; at most 53 bits wide. */
export function field(hi: number, lo: number, msb: number, lsb: number): number {
  const width = msb - lsb + 1;
  if (msb < 32) return width === 32 ? lo >>> 0 : (lo >>> lsb) & (2 ** width - 1);
  if (lsb >= 32) {
    const w = msb - lsb + 1;
    return w === 32 ? hi >>> 0 : (hi >>> (lsb - 32)) & (2 ** w - 1);
  }
  // straddles bit 32
  const loPart = lo >>> lsb; // 32 - lsb bits
  const hiBits = msb - 31;
  const hiPart = hiBits === 32 ? hi >>> 0 : hi & (2 ** hiBits - 1);
  return hiPart * 2 ** (32 - lsb) + loPart;
}

/** (hi, lo) with bits [msb:lsb] replaced by `value` (an unsigned integer of at most 53 bits). */
export function setField(hi: number, lo: number, msb: number, lsb: number, value: number): [number, number] {
  // Masks and parts are built with multiplication, as shifts by 32 or into bit 31 misbehave on JS numbers.
  if (lsb < 32) {
    const w = Math.min(msb, 31) - lsb + 1;
    const span = 2 ** w;
    const mask = (span - 1) * 2 ** lsb;
    lo = ((lo & ~mask) | ((value % span) * 2 ** lsb)) >>> 0;
    value = Math.floor(value / span);
  }
  if (msb >= 32) {
    const l = Math.max(lsb, 32) - 32;
    const span = 2 ** (msb - 32 - l + 1);
    const mask = (span - 1) * 2 ** l;
    hi = ((hi & ~mask) | ((value % span) * 2 ** l)) >>> 0;
  }
  return [hi >>> 0, lo >>> 0];
}

/** The 52-bit physical address in bits [51:12] of (hi, lo), as an exact number. */
export function addr52(hi: number, lo: number): number {
  return (hi & 0xf_ffff) * TWO_32 + ((lo & 0xffff_f000) >>> 0);
}

/** The halves of an exact non-negative number below 2^53. */
export function hiOf(n: number): number {
  return Math.floor(n / TWO_32) >>> 0;
}
export function loOf(n: number): number {
  return n >>> 0;
}

/** `0x`-prefixed lowercase hex of an exact number, as the kernel's `0x%llx` prints it. */
export function hex(n: number): string {
  return '0x' + n.toString(16);
}

/** Lowercase hex of an exact number zero-padded to `width` digits, as `%016llx` prints it. */
export function hexPad(n: number, width = 16): string {
  return n.toString(16).padStart(width, '0');
}

/** A 64-bit value given as two 32-bit halves, as 16 lowercase hex digits (`%016llx`). */
export function hex64(hi: number, lo: number): string {
  return hexPad(hi >>> 0, 8) + hexPad(lo >>> 0, 8);
}

/**
 * 2^0 .. 2^63 as exact numbers. A table lookup: `2 ** n` with a variable n goes through Math.pow, which costs
 * more than a whole cached translation.
 */
export const POW2: readonly number[] = Array.from({ length: 64 }, (_, i) => 2 ** i);
