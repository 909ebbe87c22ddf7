import * as assert from 'node:assert/strict';
import type { DmaRequest, TranslationResult } from '../../src/core/hw/types';
import { U64 } from '../../src/core/u64';
import { FAULT_REASONS } from '../../src/core/vtd/fault-reasons';
import { encodeEntry, PASID_ENTRY } from '../../src/core/vtd/structures';
import {
  pasidEntryAddress,
  setRootTable,
  writeEntry,
  writeLegacyRootEntry,
  writeScalableRootEntry,
} from '../../src/core/vtd/tables';
import { device, legacyContext, pageTable, pasidEntry, type Rig, rig, smContext } from '../support/vtd';

const HOLE = 0x2000_0000_0000; // inside a 46-bit host, made unreadable by addHole
const SID = 0x0010; // 00:02.0

/**
 * Translates, then checks what a user would look at: the fault code, the fault recording register the
 * hardware filled (SID, PASID, page, read/write, reason) and the trace step that explains it.
 */
function expectFault(r: Rig, req: DmaRequest, code: number, failing: string | RegExp): TranslationResult {
  const t = r.unit.translate(req, { trace: true });
  assert.equal(t.ok, false, `expected fault 0x${code.toString(16)}, got a translation`);
  if (t.ok) throw new Error('unreachable');
  assert.equal(t.reason.toString(16), code.toString(16), `fault reason (trace: ${t.trace?.map((s) => s.check).join(' | ')})`);
  assert.equal(t.reasonText, FAULT_REASONS.get(code)?.type === 'dma' ? FAULT_REASONS.get(code)!.text : 'Unknown');
  assert.equal(t.recorded, true);
  const [rec, ...more] = r.unit.pendingFaults();
  assert.equal(more.length, 0);
  assert.ok(rec, 'a fault recording register holds the fault');
  assert.equal(rec.reason, code);
  assert.equal(rec.sid, req.sid);
  assert.equal(rec.pasid, req.pasid ?? null);
  assert.equal(rec.write, req.write ?? false);
  const addr = typeof req.addr === 'number' ? U64.fromNumber(req.addr) : req.addr;
  assert.equal(rec.address.toString(), new U64(addr.hi, addr.lo & 0xffff_f000).toString(), 'FI is the faulting page');
  const bad = t.trace!.filter((s) => !s.ok);
  assert.ok(
    bad.some((s) => (typeof failing === 'string' ? s.structure === failing : failing.test(s.check))),
    `the trace names the failing step ${failing}: ${JSON.stringify(bad.map((s) => [s.structure, s.check]))}`,
  );
  assert.match(t.trace!.at(-1)!.check, new RegExp(`fault reason 0x${code.toString(16).padStart(2, '0')}`));
  return t;
}

function legacyRig() {
  const r = rig({ scalable: false });
  device(r, '00:02.0');
  return r;
}

function smRig(features = {}) {
  const r = rig({ features });
  device(r, '00:02.0', { ats: {}, pri: {}, pasid: { width: 20 } });
  return r;
}

/** Scalable mode with a second-level domain for RID_PASID 0, mapping 0x100000 -> 0x80000000 (2 MiB, RW). */
function smSecondLevel(features = {}) {
  const r = smRig(features);
  smContext(r, SID);
  const pt = pageTable(r, 'second-level');
  pt.map(0x10_0000, 0x8000_0000, 0x20_0000, { read: true, write: true });
  pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
  return { r, pt };
}

/** Scalable mode with a first-level table for PASID 5 mapping 0x400000 (4 KiB) read-only and user. */
function smFirstLevel(entry: Partial<Parameters<typeof pasidEntry>[3]> = {}, leaf = {}) {
  const r = smRig({ executeRequests: true, supervisorRequests: true });
  smContext(r, SID);
  const pt = pageTable(r, 'first-level');
  pt.map(0x40_0000, 0x9000_0000, 0x1000, { read: true, write: false, user: true, ...leaf });
  pasidEntry(r, SID, 5, { pgtt: 1, did: 2, flptptr: pt.root, ...entry });
  return { r, pt };
}

/** Nested: guest first-level tables in GPA space, translated by a host second-level table. */
function smNested(opts: { mapGuestTables?: 'all' | 'none' | 'top-only'; guestTablesWritable?: boolean } = {}) {
  const r = smRig();
  const mem = r.machine.memory;
  smContext(r, SID);
  const s2 = pageTable(r, 'second-level');
  // Guest page-table pages live at GPA 0x1000_0000.. and are backed 1:1 (GPA = HPA) for simplicity.
  const guest = pageTable(r, 'first-level');
  guest.map(0x7000_0000, 0x2000_0000, 0x1000, { read: true, write: true, user: true, accessed: false });
  const tables = [...mem.pages()].map((p) => p.addr).filter((a) => a >= guest.root);
  const mode = opts.mapGuestTables ?? 'all';
  for (const t of tables) {
    if (mode === 'none' || (mode === 'top-only' && t !== guest.root)) continue;
    s2.map(t, t, 0x1000, { read: true, write: opts.guestTablesWritable ?? true });
  }
  s2.map(0x2000_0000, 0xa000_0000, 0x20_0000, { read: true, write: true });
  pasidEntry(r, SID, 9, { pgtt: 3, did: 3, aw: 2, slptptr: s2.root, flptptr: guest.root });
  return { r, s2, guest };
}

describe('VT-d fault reasons (one per reason the model raises)', () => {
  describe('legacy mode', () => {
    it('0x01 root entry not present', () => {
      expectFault(legacyRig(), { sid: SID, addr: 0x1000 }, 0x01, 'root-entry');
    });

    it('0x02 context entry not present', () => {
      const r = legacyRig();
      legacyContext(r, 0x0018, { tt: 0, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root }); // 00:03.0 only
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x02, 'context-entry');
    });

    it('0x03 invalid context entry: an address width the unit does not support', () => {
      const r = legacyRig();
      legacyContext(r, SID, { tt: 0, aw: 3, did: 1, slptptr: pageTable(r, 'second-level').root });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x03, /AW 3 \(57-bit\) is not in CAP.SAGAW/);
    });

    it('0x04 access beyond MGAW', () => {
      const r = rig({ scalable: false, features: { agaws: [48], mgaw: 39 } });
      device(r, '00:02.0');
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root });
      expectFault(r, { sid: SID, addr: 2 ** 40 }, 0x04, 'fault');
    });

    it('0x05 write to a read-only mapping', () => {
      const r = legacyRig();
      const pt = pageTable(r, 'second-level');
      pt.map(0x1000, 0x5000, 0x1000, { read: true, write: false });
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pt.root });
      expectFault(r, { sid: SID, addr: 0x1234, write: true }, 0x05, 'sl-pte');
    });

    it('0x06 read of an unmapped address', () => {
      const r = legacyRig();
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root });
      expectFault(r, { sid: SID, addr: 0x10000000 }, 0x06, 'sl-pml4e');
    });

    it('0x07 next page table pointer invalid', () => {
      const r = legacyRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      const top = r.machine.memory.allocPage();
      r.machine.memory.write64(top, HOLE / 2 ** 32, 0x3);
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: top });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x07, /cannot be read/);
    });

    it('0x08 root table address invalid', () => {
      const r = legacyRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      setRootTable(r.unit, HOLE, false);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x08, /RTADDR .* cannot be read/);
    });

    it('0x09 context table pointer invalid', () => {
      const r = legacyRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      writeLegacyRootEntry(r.machine.memory, r.rootTable, 0, HOLE);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x09, /context table .* cannot be read/);
    });

    it('0x0a reserved bits in the root entry', () => {
      const r = legacyRig();
      writeEntry(r.machine.memory, r.rootTable, [0x1000_0001, 0, 0, 0x40]);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x0a, /reserved bits set: qw1/);
    });

    it('0x0b reserved bits in the context entry', () => {
      const r = legacyRig();
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root });
      const ctx = r.contextTables.get(0)! + 0x10 * 16;
      r.machine.memory.write64(ctx + 8, 0x100, r.machine.memory.readLo(ctx + 8));
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x0b, /reserved bits set/);
    });

    it('0x0c reserved bits in a page-table entry: PS at level 4', () => {
      const r = legacyRig();
      const top = r.machine.memory.allocPage();
      r.machine.memory.write64(top, 0, 0x83);
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: top });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x0c, /PS set at level 4/);
    });

    it('0x0d a translated request through a context that forbids device-TLB use', () => {
      const r = legacyRig();
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root });
      expectFault(r, { sid: SID, addr: 0x1000, kind: 'translated' }, 0x0d, 'fault');
    });

    it('0x0e an output address in the interrupt window', () => {
      const r = legacyRig();
      const pt = pageTable(r, 'second-level');
      pt.map(0x1000, 0xfee0_0000, 0x1000, { read: true, write: true });
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pt.root });
      expectFault(r, { sid: SID, addr: 0x1000, write: true }, 0x0e, /interrupt window/);
    });

    it('0x31 a request with PASID while the unit is in legacy mode', () => {
      const r = legacyRig();
      legacyContext(r, SID, { tt: 0, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root });
      expectFault(r, { sid: SID, addr: 0x1000, pasid: 1 }, 0x31, 'fault');
    });

    it('0x32 a page request while the unit is in legacy mode', () => {
      const r = legacyRig();
      legacyContext(r, SID, { tt: 1, aw: 2, did: 1, slptptr: pageTable(r, 'second-level').root });
      const out = r.unit.receivePageRequest({ rid: SID, address: 0x5000, read: true, write: false, exec: false, priv: false, lastInGroup: true, prgIndex: 3 });
      assert.equal(out, 'rejected');
      const [rec] = r.unit.pendingFaults();
      assert.equal(rec!.reason, 0x32);
      assert.equal(rec!.address.toString(), '0x5000');
    });
  });

  describe('scalable mode: root, context, PASID structures', () => {
    it('0x38 root table unreadable', () => {
      const r = smRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      setRootTable(r.unit, HOLE, true);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x38, /RTADDR/);
    });

    it('0x39 root entry half not present (devfn 0x80 and above use the upper half)', () => {
      const r = smRig();
      device(r, '00:10.0');
      smContext(r, SID); // lower half of bus 0 only
      expectFault(r, { sid: 0x0080, addr: 0x1000 }, 0x39, /UP = 0/);
    });

    it('0x3a reserved bits in the scalable-mode root entry', () => {
      const r = smRig();
      writeEntry(r.machine.memory, r.rootTable, [0x1000_0001 | 0x10, 0, 0, 0]);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x3a, /reserved bits set: qw0\[11:1\]/);
    });

    it('0x40 context table unreadable', () => {
      const r = smRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      writeScalableRootEntry(r.machine.memory, r.rootTable, 0, HOLE, undefined);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x40, /context table .* cannot be read/);
    });

    it('0x41 context entry not present', () => {
      const r = smRig();
      smContext(r, 0x0018);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x41, /not attached/);
    });

    it('0x42 reserved bits in the scalable-mode context entry', () => {
      const r = smRig();
      smContext(r, SID);
      const ctx = r.contextTables.get(0)! + 0x10 * 32;
      r.machine.memory.write64(ctx + 16, 0, 1);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x42, /reserved bits set: qw2/);
    });

    it('0x42 DTE set on a unit without device TLBs (the field is reserved there)', () => {
      const r = smRig({ deviceTlb: false });
      smContext(r, SID, { dte: true });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x42, /reserved bits set: DTE \(ECAP\.DT = 0\)/);
    });

    it('0x43 an invalid context entry: a PASID directory sized beyond the unit\'s PASID width', () => {
      const r = smRig({ pasidBits: 10 });
      smContext(r, SID, { pdts: 7 });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x43, /PDTS 7 sizes the PASID directory for 2\^20 PASIDs, more than the 10-bit PASIDs/);
    });

    it('0x44 a translated request while DTE is clear', () => {
      const { r } = smSecondLevel();
      expectFault(r, { sid: SID, addr: 0x10_0000, kind: 'translated' }, 0x44, 'fault');
    });

    it('0x45 a request with PASID while PASID Enable is clear', () => {
      const r = smRig();
      smContext(r, SID, { pasidEnable: false });
      expectFault(r, { sid: SID, addr: 0x1000, pasid: 3 }, 0x45, 'fault');
    });

    it('0x46 a PASID beyond the PASID directory size', () => {
      const r = smRig();
      smContext(r, SID, { pdts: 0 });
      expectFault(r, { sid: SID, addr: 0x1000, pasid: 0x2000 }, 0x46, 'fault');
    });

    it('0x47 a page request while PRE is clear', () => {
      const { r } = smSecondLevel();
      const out = r.unit.receivePageRequest({ rid: SID, pasid: 1, address: 0x7000, read: true, write: false, exec: false, priv: false, lastInGroup: true, prgIndex: 1 });
      assert.equal(out, 'rejected');
      const [rec] = r.unit.pendingFaults();
      assert.deepEqual([rec!.reason, rec!.sid, rec!.pasid, rec!.address.toString()], [0x47, SID, 1, '0x7000']);
    });

    it('0x48 a RID_PASID beyond the PASID directory size', () => {
      const r = smRig();
      smContext(r, SID, { pdts: 0, ridPasid: 0x3000 });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x48, 'fault');
    });

    it('0x50 PASID directory unreadable', () => {
      const r = smRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      smContext(r, SID);
      r.pasidDirs.set(SID, HOLE);
      smContext(r, SID);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x50, /PASID directory .* cannot be read/);
    });

    it('0x51 PASID directory entry not present', () => {
      const r = smRig();
      smContext(r, SID);
      expectFault(r, { sid: SID, addr: 0x1000, pasid: 0x80 }, 0x51, /no PASID table for PASIDs 0x80-0xbf/);
    });

    it('0x52 reserved bits in the PASID directory entry', () => {
      const r = smRig();
      const dir = smContext(r, SID);
      r.machine.memory.write64(dir, 0, r.machine.memory.allocPage() | 0x1 | 0x4);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x52, /reserved bits set/);
    });

    it('0x58 PASID table unreadable', () => {
      const r = smRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      const dir = smContext(r, SID);
      r.machine.memory.write64(dir, HOLE / 2 ** 32, 0x1);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x58, /PASID table .* cannot be read/);
    });

    it('0x59 PASID entry not present', () => {
      const r = smRig();
      smContext(r, SID);
      pasidEntry(r, SID, 4, { pgtt: 2, did: 1, aw: 2, slptptr: pageTable(r, 'second-level').root, present: false });
      expectFault(r, { sid: SID, addr: 0x1000, pasid: 4 }, 0x59, /PASID 0x4 is not set up/);
    });

    it('0x5a reserved bits in the PASID entry', () => {
      const r = smRig();
      smContext(r, SID);
      pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pageTable(r, 'second-level').root });
      const table = r.pasidTables.get(`${SID}:0`)!;
      r.machine.memory.write64(pasidEntryAddress(table, 0) + 24, 1, 0);
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x5a, /reserved bits set: qw3/);
    });

    it('0x5b invalid PASID entry: a reserved PGTT', () => {
      const r = smRig();
      smContext(r, SID);
      const table = r.machine.memory.allocPage();
      r.machine.memory.write64(r.pasidDirs.get(SID)!, 0, table | 1);
      writeEntry(r.machine.memory, table, encodeEntry(PASID_ENTRY, { P: true, PGTT: 5, DID: 1 }));
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x5b, /PGTT 5 is reserved/);
    });

    it('0x5c an execute request while ERE is clear', () => {
      const { r } = smFirstLevel();
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000, exec: true }, 0x5c, 'fault');
    });

    it('0x5d a privileged request while SRE is clear', () => {
      const { r } = smFirstLevel();
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000, priv: true }, 0x5d, 'fault');
    });
  });

  describe('scalable mode: first-level and nested tables', () => {
    it('0x70 a lower first-level table unreadable', () => {
      const { r, pt } = smFirstLevel();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      r.machine.memory.write64(pt.root, HOLE / 2 ** 32, 0x27);
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000 }, 0x70, /cannot be read/);
    });

    it('0x71 first-level entry not present', () => {
      const { r } = smFirstLevel();
      expectFault(r, { sid: SID, pasid: 5, addr: 0x80_0000 }, 0x71, /not present \(P = 0\)/);
    });

    it('0x72 reserved bits in a first-level entry: PS in a PML4E', () => {
      const { r, pt } = smFirstLevel();
      r.machine.memory.write64(pt.root + 8, 0, 0x87);
      expectFault(r, { sid: SID, pasid: 5, addr: 0x80_0000_0000 }, 0x72, /PS set at level 4/);
    });

    it('0x73 the first-level root table unreadable', () => {
      const r = smRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      smContext(r, SID);
      pasidEntry(r, SID, 5, { pgtt: 1, did: 2, flptptr: HOLE });
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000 }, 0x73, /cannot be read/);
    });

    it('0x74 nested: a guest table pointer beyond the second-level width', () => {
      const { r } = smNested();
      const table = r.pasidTables.get(`${SID}:0`)!;
      // FLPTPTR = 2^49: a GPA beyond the 48-bit nest parent.
      r.machine.memory.write64(pasidEntryAddress(table, 9) + 16, 0x2_0000, 0);
      expectFault(r, { sid: SID, pasid: 9, addr: 0x7000_0000 }, 0x74, 'fl-pml4e');
    });

    it('0x75 nested: the guest root table is not mapped by the second level', () => {
      const { r } = smNested({ mapGuestTables: 'none' });
      expectFault(r, { sid: SID, pasid: 9, addr: 0x7000_0000 }, 0x75, 'fl-pml4e');
    });

    it('0x76 nested: a lower guest table is not mapped by the second level', () => {
      const { r } = smNested({ mapGuestTables: 'top-only' });
      expectFault(r, { sid: SID, pasid: 9, addr: 0x7000_0000 }, 0x76, 'fl-pdpe');
    });

    it('0x77 nested: accessed-bit update needs write access to a guest table the second level maps read-only', () => {
      const { r } = smNested({ guestTablesWritable: false });
      expectFault(r, { sid: SID, pasid: 9, addr: 0x7000_0000 }, 0x77, 'fl-ad-update');
    });

    it('0x78 a second-level table unreadable', () => {
      const { r, pt } = smSecondLevel();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      r.machine.memory.write64(pt.root + 8, HOLE / 2 ** 32, 0x3);
      expectFault(r, { sid: SID, addr: 0x80_0000_0000 }, 0x78, /cannot be read/);
    });

    it('0x79 second-level entry not present', () => {
      const { r } = smSecondLevel();
      expectFault(r, { sid: SID, addr: 0x4000_0000 }, 0x79, /not present \(R = W = 0\)/);
    });

    it('0x7a reserved bits in a second-level entry: PS at level 4', () => {
      const { r, pt } = smSecondLevel();
      r.machine.memory.write64(pt.root + 8, 0, 0x83);
      expectFault(r, { sid: SID, addr: 0x80_0000_0000 }, 0x7a, /PS set at level 4/);
    });

    it('0x7b an invalid second-level page-table pointer', () => {
      const r = smRig();
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      smContext(r, SID);
      pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: HOLE });
      expectFault(r, { sid: SID, addr: 0x1000 }, 0x7b, 'fault');
    });

    it('0x7c a second-level A/D update (SSADE) with page walks not snooped (PWSNP = 0)', () => {
      const r = smRig({ secondLevelAccessDirty: true });
      smContext(r, SID);
      const pt = pageTable(r, 'second-level');
      pt.map(0x10_0000, 0x8000_0000, 0x1000, { read: true, write: true });
      pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root, ssade: true, pwsnp: false });
      expectFault(r, { sid: SID, addr: 0x10_0000, write: true }, 0x7c, 'sl-ad-update');
    });

    it('0x80 a non-canonical address for first-level translation', () => {
      const { r } = smFirstLevel();
      expectFault(r, { sid: SID, pasid: 5, addr: new U64(0x0001_0000, 0) }, 0x80, 'fault');
    });

    it('0x81 a user request to a supervisor page', () => {
      const { r } = smFirstLevel({}, { user: false });
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000 }, 0x81, /user request to a supervisor page/);
    });

    it('0x82 an execute request to a no-execute page', () => {
      const { r } = smFirstLevel({ ere: true, nxe: true }, { exec: false });
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000, exec: true }, 0x82, /XD = 1/);
    });

    it('0x83 an address beyond the second-level address width', () => {
      const { r } = smSecondLevel({ agaws: [39, 48], mgaw: 48 });
      const table = r.pasidTables.get(`${SID}:0`)!;
      const lo = r.machine.memory.readLo(pasidEntryAddress(table, 0));
      r.machine.memory.write64(pasidEntryAddress(table, 0), 0, (lo & ~0x1c) | (1 << 2)); // AW = 39-bit
      expectFault(r, { sid: SID, addr: 2 ** 40 }, 0x83, 'fault');
    });

    it('0x84 a second-level entry pointing beyond the host address width', () => {
      const { r, pt } = smSecondLevel();
      r.machine.memory.write64(pt.root + 8, 0x8000, 0x3);
      expectFault(r, { sid: SID, addr: 0x80_0000_0000 }, 0x84, /beyond the host address width/);
    });

    it('0x85 a write to a read-only first-level page', () => {
      const { r } = smFirstLevel();
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000, write: true }, 0x85, /R\/W = 0/);
    });

    it('0x86 a read of a write-only second-level page', () => {
      const { r, pt } = smSecondLevel();
      pt.map(0x4000_0000, 0x9000_0000, 0x1000, { read: false, write: true });
      expectFault(r, { sid: SID, addr: 0x4000_0000 }, 0x86, /lacks read permission/);
    });

    it('0x87 an output address in the interrupt window (scalable mode)', () => {
      const { r, pt } = smSecondLevel();
      pt.map(0x4000_0000, 0xfee0_0000, 0x1000, { read: true, write: true });
      expectFault(r, { sid: SID, addr: 0x4000_0000, write: true }, 0x87, /interrupt window/);
    });

    it('0x90 a first-level A/D update with page walks not snooped (PWSNP = 0)', () => {
      const { r } = smFirstLevel({ pwsnp: false }, { accessed: false });
      expectFault(r, { sid: SID, pasid: 5, addr: 0x40_0000 }, 0x90, 'fl-ad-update');
    });
  });

  describe('recording rules', () => {
    it('FPD suppresses qualified faults but not access errors', () => {
      const r = smRig();
      smContext(r, SID, { fpd: true });
      pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pageTable(r, 'second-level').root });
      const t = r.unit.translate({ sid: SID, addr: 0x1000 }, { trace: true });
      assert.ok(!t.ok && t.reason === 0x79 && !t.recorded);
      assert.match(t.trace!.at(-1)!.check, /not recorded: FPD is set/);
      assert.equal(r.unit.pendingFaults().length, 0);
      // An unreadable PASID table is not a qualified fault: recorded despite FPD.
      r.machine.memory.addHole(HOLE, 0x1000_0000);
      r.machine.memory.write64(r.pasidDirs.get(SID)! + 8, HOLE / 2 ** 32, 1);
      const u = r.unit.translate({ sid: SID, addr: 0x1000, pasid: 64 });
      assert.ok(!u.ok && u.reason === 0x58 && u.recorded);
    });

    it('an ATS translation request that fails goes back to the device, not to the fault registers', () => {
      const { r } = smSecondLevel();
      const ctx = r.contextTables.get(0)! + 0x10 * 32;
      r.machine.memory.write64(ctx, 0, r.machine.memory.readLo(ctx) | 0x4); // DTE
      const t = r.unit.translate({ sid: SID, addr: 0x4000_0000, kind: 'translation-request' });
      assert.ok(!t.ok && t.reason === 0x79 && !t.recorded);
      assert.equal(r.unit.pendingFaults().length, 0);
    });
  });
});
