import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { U64, field, setField } from '../../src/core/u64';

/** The same operations on BigInt, the slow but obviously right reference. */
const big = (hi: number, lo: number) => (BigInt(hi) << 32n) | BigInt(lo);

describe('64-bit values without BigInt', () => {
  const word = fc.tuple(fc.nat(0xffff_ffff), fc.nat(0xffff_ffff));
  const range = fc.nat(63).chain((lsb) => fc.tuple(fc.constant(lsb), fc.integer({ min: lsb, max: Math.min(63, lsb + 52) })));

  it('field() reads the same bits as BigInt shifting', () => {
    fc.assert(
      fc.property(word, range, ([hi, lo], [lsb, msb]) => {
        const want = (big(hi, lo) >> BigInt(lsb)) & ((1n << BigInt(msb - lsb + 1)) - 1n);
        assert.equal(field(hi, lo, msb, lsb), Number(want));
      }),
      { numRuns: 5000 },
    );
  });

  it('setField() writes the same bits as BigInt masking, and field() reads them back', () => {
    fc.assert(
      fc.property(word, range, fc.double({ min: 0, max: 1, noNaN: true }), ([hi, lo], [lsb, msb], r) => {
        const width = msb - lsb + 1;
        const v = Math.floor(r * (2 ** width - 1));
        const mask = ((1n << BigInt(width)) - 1n) << BigInt(lsb);
        const want = (big(hi, lo) & ~mask) | (BigInt(v) << BigInt(lsb));
        const [h2, l2] = setField(hi, lo, msb, lsb, v);
        assert.equal(big(h2, l2), want);
        assert.equal(field(h2, l2, msb, lsb), v);
      }),
      { numRuns: 5000 },
    );
  });

  it('U64 round-trips hex, BigInt and safe numbers', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (v) => {
        const u = U64.fromBigInt(v);
        assert.equal(u.toBigInt(), v);
        assert.equal(U64.fromHex(u.toString())!.toBigInt(), v);
        assert.equal(u.toHex().length, 16);
        if (v < 2n ** 53n) assert.equal(U64.fromNumber(Number(v)).toBigInt(), v);
      }),
    );
    assert.equal(U64.fromHex('0xffff_8880_0000_0000')!.toString(), '0xffff888000000000');
    assert.equal(U64.fromHex('1_0000_0000_0000_0000'), undefined, 'wider than 64 bits');
    assert.equal(U64.fromHex('xyz'), undefined);
    assert.throws(() => U64.fromNumber(2 ** 53), RangeError);
  });
});
