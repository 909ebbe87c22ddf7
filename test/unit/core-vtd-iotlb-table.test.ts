import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { Iotlb, type TlbEntry } from '../../src/core/vtd/caches';

/**
 * The IOTLB's leaf storage (an open-addressed table with backward-shift deletion and FIFO eviction) against
 * a plain model: a Map per (bucket, size) and an insertion-order list bounded by the capacity, as the
 * spec's chapter 6 describes a cache of tagged translations (the model, not the table, decides what is held).
 */
const SIZES = [0x1000, 0x20_0000, 0x4000_0000] as const;

const entry = (vpn: number, size: number, output: number): TlbEntry => ({ vpn, size, output, perms: 3, fault: 0, levels: 4, deps: [], verifiedAt: 0, valid: true });

type Op =
  | { kind: 'insert'; did: number; cls: number; vpn: number }
  | { kind: 'inv-domain'; did: number }
  | { kind: 'inv-range'; did: number; page: number; pages: number };

describe('core: VT-d IOTLB leaf table', () => {
  it('holds what a FIFO-bounded map of (DID, page size, page) holds, through inserts, evictions and invalidations', () => {
    // Page numbers from a small set so keys collide, replace and cluster in the probe runs.
    const op: fc.Arbitrary<Op> = fc.oneof(
      { weight: 8, arbitrary: fc.record({ kind: fc.constant('insert' as const), did: fc.integer({ min: 1, max: 3 }), cls: fc.integer({ min: 0, max: 2 }), vpn: fc.oneof(fc.integer({ min: 0, max: 40 }), fc.constant(2 ** 40 + 7)) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('inv-domain' as const), did: fc.integer({ min: 1, max: 3 }) }) },
      { weight: 2, arbitrary: fc.record({ kind: fc.constant('inv-range' as const), did: fc.integer({ min: 1, max: 3 }), page: fc.integer({ min: 0, max: 40 }), pages: fc.integer({ min: 1, max: 2000 }) }) },
    );
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 24 }), fc.array(op, { maxLength: 300 }), (capacity, ops) => {
        const tlb = new Iotlb(capacity, 16);
        const model = new Map<string, number>(); // key -> output
        const order: string[] = []; // insertion order, one record per insertion (as the hardware's FIFO)
        let n = 0;
        const key = (did: number, cls: number, vpn: number) => `${did}/${cls}/${vpn}`;
        for (const o of ops) {
          if (o.kind === 'insert') {
            const k = key(o.did, o.cls, o.vpn);
            if (order.length === capacity) {
              const old = order.shift()!;
              // An entry replaced since its record was made is not evicted by the old record.
              if (model.has(old) && !order.includes(old)) model.delete(old);
            }
            model.set(k, ++n * 0x1000);
            order.push(k);
            tlb.insert(tlb.bucket(o.did, -1, 'sl'), entry(o.vpn, SIZES[o.cls]!, n * 0x1000));
          } else {
            const range = o.kind === 'inv-range' ? { base: o.page * 0x1000, size: o.pages * 0x1000, leafOnly: true } : undefined;
            for (const k of [...model.keys()]) {
              const [did, cls, vpn] = k.split('/').map(Number) as [number, number, number];
              if (did !== o.did) continue;
              const size = SIZES[cls]!;
              if (!range || (vpn * size < range.base + range.size && range.base < (vpn + 1) * size)) model.delete(k);
            }
            tlb.invalidate((b) => b.did === o.did, range);
          }
        }
        assert.equal(tlb.entryCount, model.size);
        for (const did of [1, 2, 3]) {
          const b = tlb.bucket(did, -1, 'sl');
          const held = tlb.leafEntries(b).map((e) => `${key(did, SIZES.indexOf(e.size as (typeof SIZES)[number]), e.vpn)}=${e.output}`);
          const want = [...model].filter(([k]) => k.startsWith(`${did}/`)).map(([k, out]) => `${k}=${out}`);
          assert.deepEqual(held.sort(), want.sort());
        }
        for (const [k, out] of model) {
          const [did, cls, vpn] = k.split('/').map(Number) as [number, number, number];
          const slot = tlb.lookup(tlb.bucket(did, -1, 'sl'), vpn * (SIZES[cls]! / 0x1000));
          assert.ok(slot >= 0, `${k} is found`);
          // A smaller page of the same address may shadow a larger one: only check exact-class hits.
          if (cls === 0) assert.equal(tlb.leaves.outputs[slot], out);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('keeps every entry findable as the table grows past its first size, and drops a range exactly', () => {
    const tlb = new Iotlb(5000, 16);
    const b = tlb.bucket(7, -1, 'sl');
    // Page numbers beyond 32 bits too: the hash must use both halves.
    const vpns = Array.from({ length: 3000 }, (_, i) => (i % 2 === 0 ? i : 2 ** 36 + i));
    for (const v of vpns) tlb.insert(b, entry(v, 0x1000, v * 0x1000));
    assert.equal(tlb.entryCount, 3000);
    for (const v of vpns) assert.equal(tlb.leaves.outputs[tlb.lookup(b, v)], v * 0x1000);
    // Drop pages 0..999 (500 of the even ones): the odd ones sit at 2^36 + i, outside the range.
    const n = tlb.invalidate((x) => x === b, { base: 0, size: 1000 * 0x1000, leafOnly: true });
    assert.equal(n.iotlb, 500);
    for (const v of vpns) assert.equal(tlb.lookup(b, v) >= 0, !(v < 1000), `page 0x${v.toString(16)}`);
  });
});
