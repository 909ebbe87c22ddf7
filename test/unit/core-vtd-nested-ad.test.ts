// Accessed and dirty bits in a nested walk (PGTT = 011b). Where the expectations come from:
// - The second-level entry format: A is bit 8 and D bit 9, defined only while the PASID entry has SSADE (VT-d
//   spec, second-level paging entries; Linux: DMA_SL_PTE_DIRTY_BIT 9 in drivers/iommu/intel/iommu.h). The
//   format follows EPT's, whose A/D rule the SDM states (Vol. 3C 28.2.4 "Accessed and Dirty Flags for EPT"):
//   every entry used in a translation gets A; the entry that maps the final page of a write gets D.
// - In a nested walk the first-level tables are guest-physical: the walk translates each table pointer
//   through the second level (spec 3.8), so those second-level entries are used and get A; when the walk sets
//   A/D in a guest entry it writes the guest page-table page, and that write needs write permission through
//   the second level: fault 0x77 "SM: Write permission error in first-level paging entry in Nested
//   translation", distinct from the read faults 0x75/0x76 of reading the tables.
// - Linux enables SSADE on a nested PASID entry when the nest parent tracks dirty pages
//   (intel_pasid_setup_nested: `if (s2_domain->dirty_tracking) pasid_set_ssade(pte)`) and harvests the D bits
//   of the parent's second-level leaves (intel_iommu_read_and_clear_dirty): a guest page-table page the IOMMU
//   wrote must show as dirty there, or a migration copies it without the A/D bits the IOMMU set.
// - 0x7c "SM: A/D bit update needed in second-level entry when set up in no snoop" (PWSNP = 0).
import * as assert from 'node:assert/strict';
import type { IoPageTable } from '../../src/core/vtd/page-table';
import { device, pageTable, pasidEntry, type Rig, rig, smContext } from '../support/vtd';

const SID = 0x0010;
const K4 = 0x1000;
const GVA = 0x5000;
const GPA = 0x6000_0000;
const HPA = 0x7000_0000;
const A = 0x100;
const D = 0x200;
const FL_A = 0x20;
const FL_D = 0x40;

interface Nested {
  r: Rig;
  s1: IoPageTable;
  s2: IoPageTable;
  /** The guest page-table pages the walk of GVA reads, top first (GPA = HPA: the parent maps them 1:1). */
  flPages: number[];
}

/** GVA 0x5000 -> GPA 0x6000_0000 -> HPA 0x7000_0000 at PASID 3, the guest's four table pages mapped 1:1. */
function nested(o: { ssade: boolean; guestAccessed?: boolean; readOnlyPtPage?: boolean; pwsnp?: boolean }): Nested {
  const r = rig({ features: { secondLevelAccessDirty: true } });
  device(r, '00:02.0');
  smContext(r, SID);
  const s2 = pageTable(r, 'second-level');
  const s1 = pageTable(r, 'first-level');
  // Linux pre-sets A (and D when writable) in first-level leaves; a guest need not.
  s1.map(GVA, GPA, K4, { read: true, write: true, accessed: o.guestAccessed ?? true });
  const flPages = [...s1.leaves()].find((l) => l.iova === GVA)!.path.map((e) => e.addr - (e.addr % K4));
  flPages.forEach((page, i) => s2.map(page, page, K4, { read: true, write: !(o.readOnlyPtPage && i === 3) }));
  s2.map(GPA, HPA, K4, { read: true, write: true });
  pasidEntry(r, SID, 3, { pgtt: 3, did: 9, aw: 2, slptptr: s2.root, flptptr: s1.root, ssade: o.ssade, pwsnp: o.pwsnp ?? true });
  return { r, s1, s2, flPages };
}

/** The low words of the second-level entries that translate `gpa`, top first, as memory holds them now. */
function slPath(s2: IoPageTable, gpa: number): number[] {
  return [...s2.leaves()].find((l) => l.iova === gpa)!.path.map((e) => e.lo);
}

const flLeaf = (n: Nested) => n.s1.lookup(GVA)!.lo;

describe('vtd: accessed and dirty bits in nested translation', () => {
  it('with SSADE, every second-level entry a walk uses gets A: those translating the guest table pointers and the output', () => {
    const n = nested({ ssade: true });
    const t = n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA });
    assert.ok(t.ok && t.output === '0x' + HPA.toString(16));
    for (const page of n.flPages) {
      assert.deepEqual(slPath(n.s2, page).map((lo) => lo & (A | D)), [A, A, A, A], `second-level path of guest table page 0x${page.toString(16)}`);
    }
    assert.deepEqual(slPath(n.s2, GPA).map((lo) => lo & (A | D)), [A, A, A, A], 'the output page: A, no D on a read');
  });

  it('with SSADE, D goes to the second-level leaf of a guest table page the walk writes A/D into, and of a written output page', () => {
    // The guest leaves A and D clear in its PTE: the walk sets them, writing the guest's page-table page.
    const n = nested({ ssade: true, guestAccessed: false });
    const read = n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA });
    assert.ok(read.ok);
    assert.equal(flLeaf(n) & (FL_A | FL_D), FL_A, 'the read sets A in the guest PTE');
    const leafD = () => n.flPages.map((page) => slPath(n.s2, page).at(-1)! & D);
    assert.deepEqual(leafD(), [0, 0, 0, D], 'only the page holding the guest PTE was written (its upper entries already had A)');
    assert.equal(slPath(n.s2, GPA).at(-1)! & D, 0, 'a read does not dirty the output page');
    const write = n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA, write: true });
    assert.ok(write.ok && write.source === 'walk', 'the translation cached clean walks again for the write');
    assert.equal(flLeaf(n) & (FL_A | FL_D), FL_A | FL_D, 'the write sets D in the guest PTE');
    assert.equal(slPath(n.s2, GPA).at(-1)! & D, D, 'and in the second-level leaf of the output page');
    assert.deepEqual(leafD(), [0, 0, 0, D]);
  });

  it('with SSADE, a guest top-level entry whose A the walk sets dirties the page of the guest top-level table', () => {
    const n = nested({ ssade: true });
    const mem = n.r.machine.memory;
    const pml4e = n.s1.root + 0 * 8;
    mem.write64(pml4e, mem.readHi(pml4e), mem.readLo(pml4e) & ~FL_A);
    assert.ok(n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA }).ok);
    assert.equal(mem.readLo(pml4e) & FL_A, FL_A);
    assert.deepEqual(n.flPages.map((page) => slPath(n.s2, page).at(-1)! & D), [D, 0, 0, 0]);
  });

  it('without SSADE, nested walks leave every second-level A and D alone and still set the guest entries\' A/D', () => {
    const n = nested({ ssade: false, guestAccessed: false });
    assert.ok(n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA, write: true }).ok);
    assert.equal(flLeaf(n) & (FL_A | FL_D), FL_A | FL_D);
    for (const gpa of [...n.flPages, GPA]) assert.deepEqual(slPath(n.s2, gpa).map((lo) => lo & (A | D)), [0, 0, 0, 0]);
  });

  it('setting A/D in a guest entry whose table page the second level maps read-only is 0x77; reading that page is not', () => {
    const n = nested({ ssade: true, guestAccessed: false, readOnlyPtPage: true });
    const t = n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA }, { trace: true });
    assert.ok(!t.ok && t.reason === 0x77);
    assert.ok(t.trace!.some((s) => s.structure === 'fl-ad-update' && !s.ok));
    assert.equal(flLeaf(n) & FL_A, 0, 'the guest PTE is not written');
    assert.equal(slPath(n.s2, n.flPages[3]!).at(-1)! & D, 0, 'nor is its page dirtied');
    // A guest that pre-set A and D needs no write: its read-only table page serves reads and writes.
    const preset = nested({ ssade: true, readOnlyPtPage: true });
    assert.ok(preset.r.unit.translate({ sid: SID, pasid: 3, addr: GVA }).ok);
    assert.ok(preset.r.unit.translate({ sid: SID, pasid: 3, addr: GVA + 8, write: true }).ok);
  });

  it('with SSADE and page walks not snooped (PWSNP = 0), the first update a nested walk needs is a second-level A: 0x7c', () => {
    const n = nested({ ssade: true, pwsnp: false });
    const t = n.r.unit.translate({ sid: SID, pasid: 3, addr: GVA });
    assert.ok(!t.ok && t.reason === 0x7c);
    for (const gpa of [...n.flPages, GPA]) assert.deepEqual(slPath(n.s2, gpa).map((lo) => lo & A), [0, 0, 0, 0], 'nothing written');
    // Without SSADE and with the guest's bits pre-set, the same walk updates nothing and needs no snooping.
    assert.ok(nested({ ssade: false, pwsnp: false }).r.unit.translate({ sid: SID, pasid: 3, addr: GVA }).ok);
  });
});
