// Execute requests: which leaves let an instruction fetch through, and which fault refuses one. The rules are
// the VT-d specification's access rights (3.6.2 first level, 3.8.2 the second level of nested translation, which
// scalable mode applies to second-level-only PASID entries too), with the controls in the PASID entry (ERE,
// NXE, SMEP, SLEE) that exist on units reporting ECAP.ERS. PCIe carries Execute Requested in the PASID TLP
// prefix, on reads: a request without PASID cannot ask to execute. Fault codes are the VT-d spec's, with Linux's
// strings (dmar.c): 0x82 "SM: No execute permission for request with PASID and ER=1", 0x86 "SM: No read
// permission for Read/AtomicOp request", 0x5c "SM: ERE field is clear in PASID Table Entry".
import * as assert from 'node:assert/strict';
import type { DmaRequest } from '../../src/core/hw/types';
import { device, pageTable, pasidEntry, type Rig, rig, smContext } from '../support/vtd';

const SID = 0x0010; // 00:02.0
const IOVA = 0x40_0000;
const OUT = 0x9000_0000;

/** Sets X in the table entries above the leaf at `iova`: with SLEE = 1 a fetch needs X in every entry. */
function executableTables(r: Rig, pt: ReturnType<typeof pageTable>, iova = IOVA): void {
  const path = [...pt.leaves()].find((l) => l.iova === iova)!.path;
  for (const e of path.slice(0, -1)) r.machine.memory.write64(e.addr, e.hi, (e.lo | 4) >>> 0);
}

function unit(ers: boolean): Rig {
  const r = rig({ features: { executeRequests: ers, supervisorRequests: true } });
  device(r, '00:02.0', { ats: {}, pasid: { width: 20 } });
  smContext(r, SID);
  return r;
}

/** PASID 5 through a second-level-only entry whose leaf has the given R/W/X. */
function secondLevel(leaf: { read: boolean; write: boolean; exec: boolean }, entry: { slee?: boolean; ers?: boolean; tablesX?: boolean } = {}): Rig {
  const r = unit(entry.ers ?? true);
  const pt = pageTable(r, 'second-level');
  pt.map(IOVA, OUT, 0x1000, leaf);
  if (entry.tablesX ?? true) executableTables(r, pt);
  pasidEntry(r, SID, 5, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root, slee: entry.slee ?? false });
  return r;
}

/** PASID 5 through a first-level entry; the leaf is user unless said otherwise, XD = 1 unless `exec`. */
const tables = new WeakMap<Rig, ReturnType<typeof pageTable>>();
const pageTableOf = (r: Rig) => tables.get(r)!;

function firstLevel(leaf: { user?: boolean; exec?: boolean }, entry: { nxe?: boolean; smep?: boolean; ere?: boolean } = {}): Rig {
  const r = unit(true);
  const pt = pageTable(r, 'first-level');
  tables.set(r, pt);
  pt.map(IOVA, OUT, 0x1000, { read: true, write: true, user: leaf.user ?? true, exec: leaf.exec ?? false });
  pasidEntry(r, SID, 5, { pgtt: 1, did: 2, flptptr: pt.root, ere: entry.ere ?? true, nxe: entry.nxe ?? false, smep: entry.smep ?? false, sre: true });
  return r;
}

/** PASID 9 nested: a guest first-level table (user, executable) over a second-level table with `final`'s R/X. */
function nested(final: { read: boolean; exec: boolean }, slee: boolean): Rig {
  const r = unit(true);
  const s2 = pageTable(r, 'second-level');
  const guest = pageTable(r, 'first-level');
  guest.map(IOVA, 0x2000_0000, 0x1000, { read: true, write: true, user: true, exec: true });
  for (const p of r.machine.memory.pages()) if (p.addr >= guest.root) s2.map(p.addr, p.addr, 0x1000, { read: true, write: true });
  s2.map(0x2000_0000, 0xa000_0000, 0x1000, { read: final.read, write: true, exec: final.exec });
  executableTables(r, s2, 0x2000_0000);
  pasidEntry(r, SID, 9, { pgtt: 3, did: 3, aw: 2, slptptr: s2.root, flptptr: guest.root, ere: true, slee });
  return r;
}

const fetch = (pasid: number, extra: Partial<DmaRequest> = {}): DmaRequest => ({ sid: SID, pasid, addr: IOVA, exec: true, ...extra });

function faultOf(r: Rig, req: DmaRequest): number | 'ok' {
  const t = r.unit.translate(req, { trace: true });
  return t.ok ? 'ok' : t.reason;
}

describe('VT-d execute requests (spec 3.6.2, 3.8.2)', () => {
  describe('second level (second-level-only PASID entries and the final stage of nested)', () => {
    it('SLEE = 0: the X bits are ignored and an instruction fetch needs read permission only', () => {
      // "If SLEE ... is 0, instruction fetches are allowed from any input address with a valid translation for
      // which the Read (R) field is 1 in every second-level paging-entry."
      const r = secondLevel({ read: true, write: true, exec: false });
      const t = r.unit.translate(fetch(5), { trace: true });
      assert.ok(t.ok, `translated: ${!t.ok ? t.reason.toString(16) : ''}`);
      assert.equal(t.output, '0x90000000');
      assert.deepEqual([t.perms.read, t.perms.exec], [true, true], 'execute is granted where read is');
      assert.equal(faultOf(secondLevel({ read: true, write: false, exec: false }, { ers: false }), fetch(5)), 'ok', 'on a unit without ERS too (SLEE reads 0)');
    });

    it('SLEE = 1: a fetch needs R and X; X clear is 0x82 (not a read fault), R clear is 0x86', () => {
      assert.equal(faultOf(secondLevel({ read: true, write: true, exec: false }, { slee: true }), fetch(5)), 0x82);
      assert.equal(faultOf(secondLevel({ read: true, write: false, exec: true }, { slee: true }), fetch(5)), 'ok');
      // "... both 1 in every second-level paging-entry": X in the leaf alone is not enough (Linux's table
      // entries have R and W only).
      assert.equal(faultOf(secondLevel({ read: true, write: false, exec: true }, { slee: true, tablesX: false }), fetch(5)), 0x82);
      // A fetch is a read: a write-only leaf refuses it as a read, with or without SLEE.
      assert.equal(faultOf(secondLevel({ read: false, write: true, exec: true }, { slee: true }), fetch(5)), 0x86);
      assert.equal(faultOf(secondLevel({ read: false, write: true, exec: true }), fetch(5)), 0x86);
    });

    it('the trace says which permission the leaf lacks, and why X counts', () => {
      const t = secondLevel({ read: true, write: true, exec: false }, { slee: true }).unit.translate(fetch(5), { trace: true });
      assert.ok(!t.ok);
      const leaf = t.trace!.find((s) => s.structure === 'sl-pte')!;
      assert.equal(leaf.check, 'leaf lacks execute permission (X = 0 in an entry, and the PASID entry has SLEE = 1)');
      assert.match(t.trace!.at(-1)!.check, /^fault reason 0x82: SM: No execute permission for request with PASID and ER=1/);
    });

    it('reads and writes are as before: R for reads, W for writes, X never matters', () => {
      const r = secondLevel({ read: true, write: false, exec: false }, { slee: true });
      assert.equal(faultOf(r, { sid: SID, pasid: 5, addr: IOVA }), 'ok');
      assert.equal(faultOf(r, { sid: SID, pasid: 5, addr: IOVA, write: true }), 0x85);
    });

    it('a translation cached by a read (X as the entries have it) does not refuse a later fetch that SLEE = 0 allows', () => {
      // The read fills the IOTLB and the paging-structure caches with X clear; the fetch must not inherit that.
      const r = secondLevel({ read: true, write: true, exec: false }, { tablesX: false });
      assert.equal(faultOf(r, { sid: SID, pasid: 5, addr: IOVA }), 'ok');
      assert.equal(faultOf(r, fetch(5)), 'ok');
    });

    it('nested: the final page follows SLEE too (0x82 with SLEE = 1 and X clear), after the first level allowed the fetch', () => {
      assert.equal(faultOf(nested({ read: true, exec: false }, false), fetch(9)), 'ok');
      assert.equal(faultOf(nested({ read: true, exec: false }, true), fetch(9)), 0x82);
      assert.equal(faultOf(nested({ read: true, exec: true }, true), fetch(9)), 'ok');
      assert.equal(faultOf(nested({ read: false, exec: true }, true), fetch(9)), 0x86);
    });
  });

  describe('first level', () => {
    it('NXE = 0: XD does not restrict a fetch; NXE = 1: XD = 1 in an entry is 0x82', () => {
      // "If NXE is 0, instructions may be fetched from any input address with a valid translation [for which
      // U/S is 1]"; "if NXE is 1 ... and XD field is 0 in every paging-structure entry".
      assert.equal(faultOf(firstLevel({ exec: false }), fetch(5)), 'ok');
      assert.equal(faultOf(firstLevel({ exec: false }, { nxe: true }), fetch(5)), 0x82);
      assert.equal(faultOf(firstLevel({ exec: true }, { nxe: true }), fetch(5)), 'ok');
    });

    it('a user fetch needs U/S = 1 (0x81); a supervisor fetch under SMEP needs a supervisor page (0x82)', () => {
      assert.equal(faultOf(firstLevel({ user: false, exec: true }), fetch(5)), 0x81);
      const smep = firstLevel({ user: true, exec: true }, { smep: true });
      assert.equal(faultOf(smep, fetch(5)), 'ok', 'SMEP does not concern user requests');
      assert.equal(faultOf(smep, fetch(5, { priv: true })), 0x82);
      assert.equal(faultOf(firstLevel({ user: false, exec: true }, { smep: true }), fetch(5, { priv: true })), 'ok');
    });

    it('SMEP is checked on an IOTLB hit too: a user page cached by a supervisor read does not let a supervisor fetch through', () => {
      const r = firstLevel({ user: true, exec: true }, { smep: true });
      assert.equal(faultOf(r, { sid: SID, pasid: 5, addr: IOVA, priv: true }), 'ok');
      assert.equal(faultOf(r, fetch(5, { priv: true })), 0x82);
    });

    it('an XD in a table entry, cached by a read, does not refuse a later fetch under NXE = 0', () => {
      const r = firstLevel({ exec: true });
      const path = [...pageTableOf(r).leaves()][0]!.path;
      const pde = path.at(-2)!;
      r.machine.memory.write64(pde.addr, (pde.hi | 0x8000_0000) >>> 0, pde.lo);
      assert.equal(faultOf(r, { sid: SID, pasid: 5, addr: IOVA }), 'ok');
      assert.equal(faultOf(r, fetch(5)), 'ok');
    });

    it('ERE = 0 refuses every fetch before the walk (0x5c)', () => {
      assert.equal(faultOf(firstLevel({ exec: true }, { ere: false }), fetch(5)), 0x5c);
    });
  });

  describe('who may ask to execute', () => {
    it('ERE and SLEE are reserved on a unit without ECAP.ERS (0x5a)', () => {
      const r = unit(false);
      const pt = pageTable(r, 'second-level');
      pt.map(IOVA, OUT, 0x1000, { read: true, write: true });
      pasidEntry(r, SID, 5, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root, slee: true });
      pasidEntry(r, SID, 6, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root, ere: true });
      const a = r.unit.translate({ sid: SID, pasid: 5, addr: IOVA }, { trace: true });
      assert.ok(!a.ok && a.reason === 0x5a);
      assert.ok(a.trace!.some((s) => s.check === 'reserved bits set: SLEE (ECAP.ERS = 0)'));
      r.unit.pendingFaults();
      assert.equal(faultOf(r, { sid: SID, pasid: 6, addr: IOVA }), 0x5a);
    });

    it('a request without PASID, or a write, carries no Execute Requested: walked as a read or a write, and recorded so', () => {
      const r = unit(true);
      const pt = pageTable(r, 'second-level');
      pt.map(IOVA, OUT, 0x1000, { read: true, write: false });
      pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root, slee: true });
      const t = r.unit.translate({ sid: SID, addr: IOVA, exec: true }, { trace: true });
      assert.ok(t.ok, 'X = 0 with SLEE = 1 would refuse a fetch; a read goes through');
      assert.equal(t.trace![0]!.check, 'a request without PASID cannot ask to execute (Execute Requested is a PASID-prefix bit of reads): walked as a read');
      const w = r.unit.translate({ sid: SID, addr: IOVA, exec: true, write: true });
      assert.ok(!w.ok && w.reason === 0x85, 'refused as a write');
      const [rec] = r.unit.pendingFaults();
      assert.deepEqual([rec!.write, rec!.exec, rec!.pasid], [true, false, null]);
    });
  });
});
