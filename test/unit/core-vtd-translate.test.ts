import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { DescType } from '../../src/core/vtd/descriptors';
import { U64 } from '../../src/core/u64';
import { IoPageTable } from '../../src/core/vtd/page-table';
import { pasidEntryAddress, submitDescriptors, writePasidEntry } from '../../src/core/vtd/tables';
import { device, legacyContext, pageTable, pasidEntry, type Rig, rig, smContext } from '../support/vtd';

const SID = 0x0010;
const K4 = 0x1000;
const M2 = 0x20_0000;
const G1 = 0x4000_0000;

/** The leaves Linux's map would create for a range: the largest aligned size at each step. */
function leavesOf(iova: number, out: number, size: number): { iova: number; out: number; size: number }[] {
  const leaves = [];
  while (size > 0) {
    const s = iova % G1 === 0 && out % G1 === 0 && size >= G1 ? G1 : iova % M2 === 0 && out % M2 === 0 && size >= M2 ? M2 : K4;
    leaves.push({ iova, out, size: s });
    iova += s;
    out += s;
    size -= s;
  }
  return leaves;
}

/** Reference model: a list of leaf mappings. Unmap removes every leaf the range touches (Linux semantics). */
class ReferenceMap {
  leaves: { iova: number; out: number; size: number; write: boolean }[] = [];
  overlaps(iova: number, size: number): boolean {
    return this.leaves.some((l) => l.iova < iova + size && iova < l.iova + l.size);
  }
  map(iova: number, out: number, size: number, write: boolean): void {
    for (const l of leavesOf(iova, out, size)) this.leaves.push({ ...l, write });
  }
  unmap(iova: number, size: number): number {
    const gone = this.leaves.filter((l) => l.iova < iova + size && iova < l.iova + l.size);
    this.leaves = this.leaves.filter((l) => !gone.includes(l));
    return gone.reduce((n, l) => n + l.size, 0);
  }
  lookup(addr: number): { out: number; write: boolean } | undefined {
    const l = this.leaves.find((x) => addr >= x.iova && addr < x.iova + x.size);
    return l && { out: l.out + (addr - l.iova), write: l.write };
  }
}

type Op = { kind: 'map'; slot: number; pages: number; size: number; outSlot: number; write: boolean } | { kind: 'unmap'; slot: number; size: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('map' as const),
    slot: fc.integer({ min: 0, max: 15 }),
    pages: fc.integer({ min: 1, max: 3 }),
    size: fc.constantFrom(K4, M2, G1),
    outSlot: fc.integer({ min: 1, max: 40 }),
    write: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('unmap' as const), slot: fc.integer({ min: 0, max: 15 }), size: fc.constantFrom(K4, M2, G1) }),
);

/** The two domain formats under test: second level (SM, PGTT 2) and first level (SM, PGTT 1, PASID 7). */
function domain(format: 'second-level' | 'first-level', caching: boolean): { r: Rig; pt: IoPageTable; pasid?: number } {
  const r = rig({ caching });
  device(r, '00:02.0');
  smContext(r, SID);
  const pt = pageTable(r, format);
  if (format === 'second-level') {
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    return { r, pt };
  }
  pasidEntry(r, SID, 7, { pgtt: 1, did: 2, flptptr: pt.root });
  return { r, pt, pasid: 7 };
}

/** What a driver issues after an unmap: PSI with the smallest aligned mask covering the range, then a wait. */
function flushRange(r: Rig, format: 'second-level' | 'first-level', pasid: number | undefined, iova: number, size: number): void {
  let am = 0;
  while (Math.floor(iova / (K4 * 2 ** am)) !== Math.floor((iova + size - 1) / (K4 * 2 ** am))) am++;
  const base = Math.floor(iova / (K4 * 2 ** am)) * K4 * 2 ** am;
  const d: { type: number; fields: Record<string, number> } = format === 'second-level'
    ? { type: DescType.IOTLB, fields: { G: 3, DID: 1, ADDR: base, AM: am, IH: 0 } }
    : { type: DescType.PASID_IOTLB, fields: { G: 3, DID: 2, PASID: pasid!, ADDR: base, AM: am, IH: 0 } };
  submitDescriptors(r.unit, [d, { type: DescType.WAIT, fields: { SW: 1, STATUS: 1, ADDR: r.machine.memory.allocPage() } }]);
}

function probes(ops: Op[]): number[] {
  const out = new Set<number>();
  for (const op of ops) {
    const base = op.slot * G1;
    for (const off of [0, K4, M2 - K4, M2, G1 - K4, 0x1234]) out.add(base + off);
  }
  return [...out];
}

describe('VT-d translation', () => {
  for (const format of ['second-level', 'first-level'] as const) {
    it(`random map/unmap sequences in ${format} format translate exactly like a reference map (walks only)`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 1, maxLength: 12 }), (ops) => {
          const { r, pt, pasid } = domain(format, false);
          const ref = new ReferenceMap();
          for (const op of ops) {
            const iova = op.slot * G1 + (op.kind === 'map' && op.size === K4 ? K4 * 3 : 0);
            if (op.kind === 'map') {
              const size = op.size * op.pages;
              if (ref.overlaps(iova, size)) assert.throws(() => pt.map(iova, op.outSlot * G1, size, { read: true, write: op.write }), /already mapped|inside/);
              else {
                pt.map(iova, op.outSlot * G1, size, { read: true, write: op.write });
                ref.map(iova, op.outSlot * G1, size, op.write);
              }
            } else {
              assert.equal(pt.unmap(iova, op.size), ref.unmap(iova, op.size));
            }
          }
          for (const addr of probes(ops)) {
            const want = ref.lookup(addr);
            for (const write of [false, true]) {
              const t = r.unit.translate({ sid: SID, addr, write, ...(pasid !== undefined ? { pasid } : {}) });
              if (want && (want.write || !write)) {
                assert.ok(t.ok, `0x${addr.toString(16)} ${write ? 'write' : 'read'} should translate`);
                assert.equal(t.output, '0x' + want.out.toString(16));
              } else {
                assert.ok(!t.ok, `0x${addr.toString(16)} ${write ? 'write' : 'read'} should fault`);
              }
            }
          }
        }),
        { numRuns: 60 },
      );
    });

    it(`with caches: the right invalidation leaves no stale translation, a missing one is detected (${format})`, () => {
      fc.assert(
        fc.property(fc.array(opArb, { minLength: 2, maxLength: 10 }), fc.boolean(), (ops, invalidate) => {
          const { r, pt, pasid } = domain(format, true);
          const ref = new ReferenceMap();
          const req = (addr: number) => ({ sid: SID, addr, ...(pasid !== undefined ? { pasid } : {}) });
          // Leaves the IOTLB holds because we translated through them after mapping.
          let cached: ReferenceMap['leaves'] = [];
          for (const op of ops) {
            const iova = op.slot * G1;
            if (op.kind === 'map') {
              const size = op.size * op.pages;
              if (ref.overlaps(iova, size)) continue;
              pt.map(iova, op.outSlot * G1, size, { read: true, write: op.write });
              ref.map(iova, op.outSlot * G1, size, op.write);
              for (const a of [iova, iova + size - K4]) {
                const t = r.unit.translate(req(a));
                // Without invalidation a stale paging-structure entry may send even a fresh mapping's walk astray;
                // anything else must translate.
                assert.ok(t.ok || (!invalidate && t.stale), `0x${a.toString(16)} translates right after its map`);
                if (!t.ok || t.stale) continue;
                const leaf = ref.leaves.find((l) => a >= l.iova && a < l.iova + l.size)!;
                cached = cached.filter((c) => c.iova !== leaf.iova).concat(leaf);
              }
            } else {
              const unmapped = pt.unmap(iova, op.size);
              ref.unmap(iova, op.size);
              if (unmapped > 0 && invalidate) {
                flushRange(r, format, pasid, iova, Math.max(op.size, unmapped));
                cached = cached.filter((c) => !(c.iova < iova + Math.max(op.size, unmapped) && iova < c.iova + c.size));
              }
            }
          }
          for (const addr of probes(ops)) {
            const t = r.unit.translate(req(addr));
            const want = ref.lookup(addr);
            const hit = cached.find((c) => addr >= c.iova && addr < c.iova + c.size);
            // The cached leaf no longer matches memory: it was unmapped, or replaced by a different one.
            const changed = hit && !ref.leaves.some((l) => l.iova === hit.iova && l.size === hit.size && l.out === hit.out && l.write === hit.write);
            if (invalidate) {
              assert.equal(t.stale, undefined, `no stale use after invalidation at 0x${addr.toString(16)}`);
              assert.equal(t.ok, want !== undefined, `0x${addr.toString(16)}`);
              if (t.ok) assert.equal(t.output, '0x' + want!.out.toString(16));
            } else if (changed) {
              assert.equal(t.stale?.cache, 'iotlb', `the stale IOTLB entry for 0x${addr.toString(16)} is detected`);
              assert.ok(t.ok && t.output === '0x' + (hit.out + (addr - hit.iova)).toString(16), 'and still used, as hardware would');
            } else if (!t.stale) {
              // Paging-structure caches may also be stale (a freed table); anything not flagged must be right.
              assert.equal(t.ok, want !== undefined, `0x${addr.toString(16)}`);
              if (t.ok) assert.equal(t.output, '0x' + want!.out.toString(16));
            }
          }
        }),
        { numRuns: 80 },
      );
    });
  }

  it('nested translation equals the composition of the first-level and second-level maps', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.integer({ min: 0, max: 63 }), { minLength: 1, maxLength: 8 }),
        fc.uniqueArray(fc.integer({ min: 0, max: 63 }), { minLength: 1, maxLength: 12 }),
        fc.integer({ min: 0, max: 1000 }),
        (s1Pages, s2Pages, seed) => {
          const r = rig({ caching: false });
          device(r, '00:02.0');
          smContext(r, SID);
          const mem = r.machine.memory;
          const s2 = pageTable(r, 'second-level');
          const s1 = pageTable(r, 'first-level');
          // S1: GVA page g -> GPA page (g * 7 + seed) % 64 in the 0x4000_0000 GPA window.
          const gpaOf = (g: number) => 0x4000_0000 + ((g * 7 + seed) % 64) * K4;
          for (const g of s1Pages) s1.map(0x1_0000_0000 + g * K4, gpaOf(g), K4, { read: true, write: true });
          // Guest tables are at GPA = HPA: map them 1:1 in S2 so the walk can read them.
          for (const { addr } of mem.pages()) if (addr >= s1.root) s2.map(addr, addr, K4, { read: true, write: true });
          // S2: GPA page p of the window -> HPA 0x9_0000_0000 + p * 0x3000.
          for (const p of s2Pages) s2.map(0x4000_0000 + p * K4, 0x9_0000_0000 + p * 0x3000, K4, { read: true, write: true });
          pasidEntry(r, SID, 3, { pgtt: 3, did: 9, aw: 2, slptptr: s2.root, flptptr: s1.root });
          for (let g = 0; g < 64; g++) {
            const t = r.unit.translate({ sid: SID, pasid: 3, addr: 0x1_0000_0000 + g * K4 + 0x10 });
            const gpaPage = (gpaOf(g) - 0x4000_0000) / K4;
            const mapped = s1Pages.includes(g) && s2Pages.includes(gpaPage);
            assert.equal(t.ok, mapped, `GVA page ${g}`);
            if (t.ok) assert.equal(t.output, '0x' + (0x9_0000_0000 + gpaPage * 0x3000 + 0x10).toString(16));
            else assert.equal(t.reason, s1Pages.includes(g) ? 0x79 : 0x71);
          }
        },
      ),
      { numRuns: 40 },
    );
  });

  /** PASID 3 nested: guest 0x5000 -> GPA 0x6000_0000 -> HPA 0x7000_0000, the guest's tables mapped 1:1. */
  function nested4over4(r: Rig, entry: { ssade?: boolean } = {}) {
    device(r, '00:02.0');
    smContext(r, SID);
    const s2 = pageTable(r, 'second-level');
    const s1 = pageTable(r, 'first-level');
    s1.map(0x5000, 0x6000_0000, K4, { read: true, write: true });
    for (const { addr } of r.machine.memory.pages()) if (addr >= s1.root) s2.map(addr, addr, K4, { read: true, write: true });
    s2.map(0x6000_0000, 0x7000_0000, K4, { read: true, write: true });
    pasidEntry(r, SID, 3, { pgtt: 3, did: 9, aw: 2, slptptr: s2.root, flptptr: s1.root, ...entry });
    return { s1, s2 };
  }

  it('walks 4-level over 4-level nested tables in 24 paging reads (plus root, context and PASID entries)', () => {
    const r = rig({ caching: false });
    nested4over4(r);
    const t = r.unit.translate({ sid: SID, pasid: 3, addr: 0x5008 }, { trace: true });
    assert.ok(t.ok);
    assert.equal(t.output, '0x70000008');
    assert.equal(t.reads, 4 + 24);
    const fl = t.trace!.filter((s) => s.stage === 1);
    assert.deepEqual(fl.map((s) => s.structure), ['fl-pml4e', 'fl-pdpe', 'fl-pde', 'fl-pte']);
    for (const s of fl) assert.deepEqual(s.nestedTrace!.map((n) => n.structure), ['sl-pml4e', 'sl-pdpe', 'sl-pde', 'sl-pte']);
    const out = t.trace!.find((s) => s.structure === 'nested-output')!;
    assert.equal(out.nestedTrace!.length, 4);
  });

  it('nested with SSADE: a write sets D in the second-level leaf too, even through a translation cached clean', () => {
    const r = rig({ features: { secondLevelAccessDirty: true } });
    // The guest pre-sets A and D in its first-level leaf, as Linux does for writable mappings.
    const { s2 } = nested4over4(r, { ssade: true });
    const slDirty = () => (s2.lookup(0x6000_0000)!.lo & 0x200) !== 0;
    const read = r.unit.translate({ sid: SID, pasid: 3, addr: 0x5000 });
    assert.ok(read.ok && !slDirty(), 'a read sets no D');
    assert.equal(s2.lookup(0x6000_0000)!.lo & 0x100, 0x100, 'but A, in the second-level leaf of the data page');
    const write = r.unit.translate({ sid: SID, pasid: 3, addr: 0x5000, write: true });
    assert.ok(write.ok && write.source === 'walk', 'the clean cached translation is not used for a write');
    assert.ok(slDirty(), 'the write dirtied the second-level leaf');
    const again = r.unit.translate({ sid: SID, pasid: 3, addr: 0x5000, write: true });
    assert.ok(again.ok && again.source === 'iotlb' && again.stale === undefined);
  });

  it('says in the trace when a translation came from a cache', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0, 0x8000_0000, M2 * 2, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    const first = r.unit.translate({ sid: SID, addr: 0x1000 }, { trace: true });
    assert.ok(first.ok && first.source === 'walk' && first.reads === 4 + 3);
    assert.ok(first.trace!.every((s) => s.cached === undefined));
    const second = r.unit.translate({ sid: SID, addr: 0x1008 }, { trace: true });
    assert.ok(second.ok && second.source === 'iotlb' && second.reads === 0);
    assert.deepEqual(second.trace!.map((s) => s.cached), ['context-cache', 'pasid-cache', 'iotlb']);
    // Another 2 MiB page: the PDE comes from the paging-structure cache; only the leaf is read.
    const third = r.unit.translate({ sid: SID, addr: M2 + 8 }, { trace: true });
    assert.ok(third.ok && third.source === 'walk');
    assert.equal(third.reads, 1);
    assert.ok(third.trace!.some((s) => s.cached === 'paging-structure-cache' && s.structure === 'sl-pdpe'));
  });

  it('keeps using a stale context entry until the context cache is invalidated', () => {
    const r = rig({ scalable: false });
    device(r, '00:02.0');
    const a = pageTable(r, 'second-level');
    const b = pageTable(r, 'second-level');
    a.map(0x1000, 0xa000, K4, { read: true, write: true });
    b.map(0x1000, 0xb000, K4, { read: true, write: true });
    legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: a.root });
    assert.equal(r.unit.translate({ sid: SID, addr: 0x1000 }).ok && 'ok', 'ok');
    legacyContext(r, SID, { tt: 0, aw: 2, did: 2, slptptr: b.root });
    const stale = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(stale.ok && stale.output === '0xa000');
    assert.equal(stale.stale?.cache, 'context-cache');
    submitDescriptors(r.unit, [{ type: DescType.CONTEXT_CACHE, fields: { G: 3, SID, DID: 1, FM: 0 } }]);
    const fresh = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(fresh.ok && fresh.output === '0xb000' && fresh.stale === undefined);
  });

  it('keeps using a stale PASID entry until a PASID-cache invalidation for its DID and PASID', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const a = pageTable(r, 'first-level');
    const b = pageTable(r, 'first-level');
    a.map(0x1000, 0xa000, K4, { read: true, write: true });
    b.map(0x1000, 0xb000, K4, { read: true, write: true });
    pasidEntry(r, SID, 4, { pgtt: 1, did: 5, flptptr: a.root });
    assert.ok(r.unit.translate({ sid: SID, pasid: 4, addr: 0x1000 }).ok);
    pasidEntry(r, SID, 4, { pgtt: 1, did: 6, flptptr: b.root });
    const stale = r.unit.translate({ sid: SID, pasid: 4, addr: 0x1000 });
    assert.ok(stale.ok && stale.output === '0xa000' && stale.stale?.cache === 'pasid-cache');
    // A PASID-selective invalidation for the wrong PASID does nothing.
    submitDescriptors(r.unit, [{ type: DescType.PASID_CACHE, fields: { G: 1, DID: 5, PASID: 3 } }]);
    assert.equal(r.unit.translate({ sid: SID, pasid: 4, addr: 0x1000 }).ok && 'cached', 'cached');
    submitDescriptors(r.unit, [{ type: DescType.PASID_CACHE, fields: { G: 1, DID: 5, PASID: 4 } }]);
    const fresh = r.unit.translate({ sid: SID, pasid: 4, addr: 0x1000 });
    assert.ok(fresh.ok && fresh.output === '0xb000' && fresh.stale === undefined);
  });

  it('with caching mode, caches a not-present entry until software invalidates after mapping', () => {
    const r = rig({ features: { cachingMode: true } });
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0x10_0000, 0x8000_0000, K4, { read: true, write: true }); // the tables exist; 0x20_0000 is not mapped
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    assert.equal(r.unit.cacheNotPresent, true);
    const miss = r.unit.translate({ sid: SID, addr: 0x20_0000 });
    assert.ok(!miss.ok && miss.reason === 0x79);
    pt.map(0x20_0000, 0x9000_0000, K4, { read: true, write: true });
    const cached = r.unit.translate({ sid: SID, addr: 0x20_0000 }, { trace: true });
    assert.ok(!cached.ok && cached.reason === 0x79, 'the cached not-present entry still faults');
    assert.equal(cached.stale?.cache, 'iotlb');
    assert.match(cached.trace![2]!.check, /cached not-present translation/);
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 3, DID: 1, ADDR: 0x20_0000, AM: 0, IH: 0 } }]);
    const now = r.unit.translate({ sid: SID, addr: 0x20_0000 });
    assert.ok(now.ok && now.output === '0x90000000');
  });

  it('without caching mode, a newly mapped page is seen without invalidation', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    assert.ok(!r.unit.translate({ sid: SID, addr: 0x20_0000 }).ok);
    pt.map(0x20_0000, 0x9000_0000, K4, { read: true, write: true });
    assert.ok(r.unit.translate({ sid: SID, addr: 0x20_0000 }).ok);
  });

  it('an IOTLB invalidation with IH = 1 keeps the paging-structure caches; IH = 0 drops them too', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0, 0x8000_0000, M2, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    r.unit.translate({ sid: SID, addr: 0 });
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 3, DID: 1, ADDR: 0, AM: 0, IH: 1 } }]);
    const a = r.unit.translate({ sid: SID, addr: 0 }, { trace: true });
    assert.ok(a.ok && a.reads === 1 && a.trace!.some((s) => s.cached === 'paging-structure-cache'));
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 3, DID: 1, ADDR: 0, AM: 0, IH: 0 } }]);
    const b = r.unit.translate({ sid: SID, addr: 0 });
    assert.ok(b.ok && b.reads === 3, 'PML4E, PDPE and the 2 MiB PDE leaf are read again');
  });

  it('second-level IOTLB invalidations do not touch first-level entries of the same DID, and vice versa', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const sl = pageTable(r, 'second-level');
    const fl = pageTable(r, 'first-level');
    sl.map(0, 0xa000, K4, { read: true, write: true });
    fl.map(0, 0xb000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: sl.root });
    pasidEntry(r, SID, 1, { pgtt: 1, did: 1, flptptr: fl.root });
    r.unit.translate({ sid: SID, addr: 0 });
    r.unit.translate({ sid: SID, pasid: 1, addr: 0 });
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 2, DID: 1 } }]);
    assert.equal(r.unit.translate({ sid: SID, pasid: 1, addr: 0 }).ok && (r.unit.translate({ sid: SID, pasid: 1, addr: 0 }) as { source: string }).source, 'iotlb');
    assert.equal((r.unit.translate({ sid: SID, addr: 0 }) as { source: string }).source, 'walk');
    submitDescriptors(r.unit, [{ type: DescType.PASID_IOTLB, fields: { G: 2, DID: 1, PASID: 1 } }]);
    assert.equal((r.unit.translate({ sid: SID, addr: 0 }) as { source: string }).source, 'iotlb');
    assert.equal((r.unit.translate({ sid: SID, pasid: 1, addr: 0 }) as { source: string }).source, 'walk');
  });

  it('sets accessed and dirty bits in first-level entries as it walks', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'first-level');
    pt.map(0x1000, 0xc000, K4, { read: true, write: true, accessed: false });
    pasidEntry(r, SID, 2, { pgtt: 1, did: 3, flptptr: pt.root });
    const leaf = () => pt.lookup(0x1000)!.lo;
    assert.equal(leaf() & 0x60, 0);
    r.unit.translate({ sid: SID, pasid: 2, addr: 0x1000 });
    assert.equal(leaf() & 0x60, 0x20, 'a read sets A');
    r.unit.translate({ sid: SID, pasid: 2, addr: 0x1000, write: true });
    assert.equal(leaf() & 0x60, 0x60, 'a write sets D');
    const top = r.machine.memory.readLo(pt.root);
    assert.equal(top & 0x20, 0x20, 'the walk set A in the upper levels too');
    const t = r.unit.translate({ sid: SID, pasid: 2, addr: 0x1000, write: true });
    assert.equal(t.stale, undefined, 'hardware A/D updates do not count as software changes');
  });

  it('sets accessed and dirty bits in second-level entries when the PASID entry has SSADE (dirty tracking)', () => {
    const r = rig({ features: { secondLevelAccessDirty: true } });
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0x1000, 0xc000, K4, { read: true, write: true });
    pt.map(0x2000, 0xd000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 3, aw: 2, slptptr: pt.root, ssade: true });
    const leaf = (a: number) => pt.lookup(a)!.lo & 0x300;
    r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.equal(leaf(0x1000), 0x100, 'a read sets A (bit 8)');
    assert.equal(r.machine.memory.readLo(pt.root) & 0x100, 0x100, 'in every level it walked');
    r.unit.translate({ sid: SID, addr: 0x1000, write: true });
    assert.equal(leaf(0x1000), 0x300, 'a write through the clean IOTLB entry walks again and sets D (bit 9)');
    assert.equal(leaf(0x2000), 0, 'the neighbour stays clean');
    const again = r.unit.translate({ sid: SID, addr: 0x1000, write: true });
    assert.ok(again.ok && again.source === 'iotlb' && again.stale === undefined, 'a dirty entry serves writes from the IOTLB');
    // Software harvests the dirty bit (clears it, then flushes the IOTLB); the next write sets it again.
    const entry = [...pt.leaves()].find((l) => l.iova === 0x1000)!.path.at(-1)!;
    r.machine.memory.write64(entry.addr, entry.hi, entry.lo & ~0x200);
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 2, DID: 3 } }]);
    r.unit.translate({ sid: SID, addr: 0x1000, write: true });
    assert.equal(leaf(0x1000), 0x300, 'dirty again after the harvest');
    // Without SSADE the walk leaves the entries alone.
    const plain = rig({ features: { secondLevelAccessDirty: true } });
    device(plain, '00:02.0');
    smContext(plain, SID);
    const pt2 = pageTable(plain, 'second-level');
    pt2.map(0x1000, 0xc000, K4, { read: true, write: true });
    pasidEntry(plain, SID, 0, { pgtt: 2, did: 3, aw: 2, slptptr: pt2.root });
    plain.unit.translate({ sid: SID, addr: 0x1000, write: true });
    assert.equal(pt2.lookup(0x1000)!.lo & 0x300, 0);
    // SSADE on a unit without ECAP.SLADS is a reserved bit.
    const old = rig();
    device(old, '00:02.0');
    smContext(old, SID);
    pasidEntry(old, SID, 0, { pgtt: 2, did: 3, aw: 2, slptptr: pt2.root, ssade: true });
    const f = old.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(!f.ok && f.reason === 0x5a);
  });

  it('ATS: fills the device TLB, serves from it, and flags it stale when a device-TLB invalidation is missing', () => {
    const r = rig();
    const ep = device(r, '00:02.0', { ats: {} });
    smContext(r, SID, { dte: true });
    const pt = pageTable(r, 'second-level');
    pt.map(0x1000, 0xd000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    const a = r.machine.dma('00:02.0', { addr: 0x1010 });
    assert.equal(a.path, 'ats-fill');
    assert.ok(a.result.ok && a.result.output === '0xd010');
    const b = r.machine.dma('00:02.0', { addr: 0x1020 });
    assert.equal(b.path, 'device-tlb');
    assert.ok(b.result.ok && b.result.output === '0xd020' && b.result.stale === undefined);
    pt.unmap(0x1000, K4);
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 3, DID: 1, ADDR: 0x1000, AM: 0, IH: 0 } }]);
    const c = r.machine.dma('00:02.0', { addr: 0x1030 });
    assert.equal(c.path, 'device-tlb');
    assert.equal(c.result.stale?.cache, 'device-tlb');
    assert.match(c.result.stale!.message, /device-TLB invalidation is missing/);
    submitDescriptors(r.unit, [{ type: DescType.DEVICE_TLB, fields: { SID, QDEP: ep.atsQueueDepth & 0x1f, ADDR: 0x1000, S: 0 } }]);
    assert.equal(ep.deviceTlbEntries.length, 0);
    const d = r.machine.dma('00:02.0', { addr: 0x1040 });
    assert.equal(d.path, 'ats-fill');
    assert.ok(!d.result.ok && d.result.reason === 0x79 && !d.result.recorded);
  });

  it('probe() translates without touching caches, fault registers or A/D bits', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'first-level');
    pt.map(0x1000, 0xc000, K4, { read: true, write: true, accessed: false });
    pasidEntry(r, SID, 2, { pgtt: 1, did: 3, flptptr: pt.root });
    const before = r.machine.memory.writeCount;
    assert.ok(r.unit.probe({ sid: SID, pasid: 2, addr: 0x1000, write: true }).ok);
    assert.ok(!r.unit.probe({ sid: SID, pasid: 2, addr: 0x9000 }).ok);
    assert.equal(r.machine.memory.writeCount, before);
    assert.deepEqual(r.unit.cacheSizes(), { context: 0, pasid: 0, iotlb: 0 });
    assert.equal(r.unit.pendingFaults().length, 0);
  });

  it('a 5-level first-level table translates 57-bit canonical addresses', () => {
    const r = rig({ features: { firstLevel5Level: true } });
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = new IoPageTable(r.machine.memory, { format: 'first-level', levels: 5 });
    pt.map(2 ** 52, 0xe000, K4, { read: true, write: true });
    pasidEntry(r, SID, 2, { pgtt: 1, did: 3, flptptr: pt.root, flpm: 1 });
    const t = r.unit.translate({ sid: SID, pasid: 2, addr: 2 ** 52 + 0x44 }, { trace: true });
    assert.ok(t.ok && t.output === '0xe044');
    assert.equal(t.trace!.filter((s) => s.structure.startsWith('fl-')).length, 5);
    // FLPM = 1 without CAP.FL5LP is an invalid PASID entry.
    const r2 = rig();
    device(r2, '00:02.0');
    smContext(r2, SID);
    pasidEntry(r2, SID, 2, { pgtt: 1, did: 3, flptptr: pt.root, flpm: 1 });
    const u = r2.unit.translate({ sid: SID, pasid: 2, addr: 0x1000 });
    assert.ok(!u.ok && u.reason === 0x5b);
  });

  it('updates the PASID entry in place: a DID change needs the old DID in the PASID-cache invalidation', () => {
    const r = rig();
    device(r, '00:02.0');
    smContext(r, SID);
    const pt = pageTable(r, 'second-level');
    pt.map(0, 0xa000, K4, { read: true, write: true });
    pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
    r.unit.translate({ sid: SID, addr: 0 });
    const table = r.pasidTables.get(`${SID}:0`)!;
    writePasidEntry(r.machine.memory, table, 0, { pgtt: 2, did: 2, aw: 2, slptptr: pt.root });
    const did = () => {
      const t = r.unit.translate({ sid: SID, addr: 0 });
      return t.ok ? t.did : undefined;
    };
    submitDescriptors(r.unit, [{ type: DescType.PASID_CACHE, fields: { G: 1, DID: 2, PASID: 0 } }]); // new DID: misses
    assert.equal(did(), 1);
    submitDescriptors(r.unit, [{ type: DescType.PASID_CACHE, fields: { G: 1, DID: 1, PASID: 0 } }]);
    assert.equal(did(), 2);
    assert.equal(pasidEntryAddress(table, 0), table);
  });

  describe('entry fields as the specification defines them', () => {
    it('RTADDR: the root table is bits HAW-1:12 of RTA; bits 63:HAW are ignored (not implemented) and bits 11:0 are TTM and reserved', () => {
      // RTADDR_REG: "RTA (63:12): ... Hardware may ignore and not implement bits 63:HAW"; TTM is 11:10.
      const r = rig({ scalable: false, hostAddressWidth: 39 });
      device(r, '00:02.0');
      const pt = pageTable(r, 'second-level');
      pt.map(0x5000, 0xb000, K4, { read: true, write: true });
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pt.root });
      const written = 2 ** 63 + 2 ** 50 + 2 ** 39 + r.rootTable; // bits 63, 50 and 39 lie at or above HAW (39)
      r.unit.writeRegister('RTADDR', new U64(Math.floor(written / 2 ** 32) >>> 0, (r.rootTable + 0x3ff) >>> 0));
      r.unit.writeRegister('GCMD', (r.unit.readRegister('GSTS').lo | (1 << 30)) >>> 0);
      assert.equal(r.unit.rootTableAddress, r.rootTable);
      assert.equal(r.unit.scalableMode, false, 'TTM (11:10) is 00: bits 9:0 set do not change the format');
      const t = r.unit.translate({ sid: SID, addr: 0x5123 });
      assert.ok(t.ok);
      assert.equal(t.output, '0xb123');
    });

    it('bit 7 of a level-1 second-level entry (a 4 KiB page) is ignored, as in the EPT page-table entry (bits 11:7 ignored): no reserved-bit fault', () => {
      const r = rig({ scalable: false });
      device(r, '00:02.0');
      const pt = pageTable(r, 'second-level');
      pt.map(0x1000, 0x4000_5000, K4, { read: true, write: false });
      const leaf = pt.lookup(0x1000)!;
      const pte = pt.leaves().next().value!.path.at(-1)!.addr;
      r.machine.memory.write64(pte, leaf.hi, (leaf.lo | 0x80) >>> 0);
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pt.root });
      const t = r.unit.translate({ sid: SID, addr: 0x1234, write: false }, { trace: true });
      assert.ok(t.ok, `translated: ${!t.ok ? t.reason : ''}`);
      assert.equal(t.output, '0x40005234');
      assert.equal(t.pageSize, K4);
    });

    it('bit 7 of a first-level PTE is PAT, not a page size: a 4 KiB page whose frame is not 1 GiB aligned translates', () => {
      const r = rig({ features: { executeRequests: true } });
      device(r, '00:02.0', { pasid: { width: 20 } });
      smContext(r, SID);
      const pt = pageTable(r, 'first-level');
      pt.map(0x40_0000, 0x9000_3000, K4, { read: true, write: true, user: true });
      const leaf = pt.lookup(0x40_0000)!;
      const pte = pt.leaves().next().value!.path.at(-1)!.addr;
      r.machine.memory.write64(pte, leaf.hi, (leaf.lo | 0x80) >>> 0);
      pasidEntry(r, SID, 5, { pgtt: 1, did: 2, flptptr: pt.root });
      const t = r.unit.translate({ sid: SID, pasid: 5, addr: 0x40_0010 });
      assert.ok(t.ok, `translated: ${!t.ok ? t.reason : ''}`);
      assert.equal(t.output, '0x90003010');
    });

    it('a misaligned large page names its own size: a 2 MiB PDE with address bits 20:13 set is "2 MiB page address not 2 MiB aligned"', () => {
      const r = rig({ scalable: false });
      device(r, '00:02.0');
      const pt = pageTable(r, 'second-level');
      pt.map(0x20_0000, 0x4000_0000, M2, { read: true, write: true });
      const pde = pt.leaves().next().value!.path.at(-1)!;
      r.machine.memory.write64(pde.addr, pde.hi, (pde.lo | 0x1000_0) >>> 0);
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pt.root });
      const t = r.unit.translate({ sid: SID, addr: 0x20_0000 }, { trace: true });
      assert.ok(!t.ok);
      assert.equal(t.reason, 0x0c);
      assert.ok(t.trace!.some((s) => s.structure === 'sl-pde' && s.check === 'reserved: 2 MiB page address not 2 MiB aligned'), JSON.stringify(t.trace!.map((s) => s.check)));
    });
  });
});
