import * as assert from 'node:assert/strict';
import type { HwEvent } from '../../src/core/hw/events';
import { Machine } from '../../src/core/hw/machine';
import type { InterruptFault, InterruptRequest, InterruptResult } from '../../src/core/hw/types';
import { renderIrTranslationStruct } from '../../src/core/driver/debugfs';
import { describeInterruptWalk } from '../../src/core/hw/walk-text';
import { IommuKernel, type KernelOptions } from '../../src/core/driver/kernel';
import { dmarFaultLines } from '../../src/core/driver/log';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { FAULT_REASONS, linuxFaultReason } from '../../src/core/vtd/fault-reasons';
import { compatibilityMsi, remappableMsi } from '../../src/core/vtd/interrupt-remap';
import { FSTS, GSTS } from '../../src/core/vtd/registers';
import { irteAddress, setInterruptRemapTable } from '../../src/core/vtd/tables';
import { U64 } from '../../src/core/u64';
import { descriptorsDuring } from '../support/descriptors';
import { device, invalidateIec, irTable, irte, postedIrte, type Rig, rig } from '../support/vtd';
import { vtdUnitOf, vtdUnits } from '../../src/core/vtd/factory';

const SID = 0x0010; // 00:02.0
const HOLE = 0x2000_0000_0000;

/** A unit with a 256-entry interrupt-remapping table (IRTA.S = 7), remapping on, x2APIC mode unless told. */
function irRig(o: { size?: number; eime?: boolean; cfi?: boolean; features?: VtdFeatures; enable?: boolean } = {}) {
  const r = rig({ features: o.features });
  device(r, '00:02.0');
  const table = irTable(r, { size: o.size ?? 7, eime: o.eime ?? true, cfi: o.cfi, enable: o.enable });
  return { r, table };
}

/** Clears every pending fault record (write 1 to F), as the fault handler does. */
function clearFaults(r: Rig): void {
  for (const rec of r.unit.pendingFaults()) r.unit.writeRegister(r.unit.faultRecordingRegisters.base + rec.index * 16 + 8, new U64(0x8000_0000, 0));
}

const msi = (index: number, subhandle = 0): InterruptRequest => ({ sid: SID, ...remappableMsi(index, subhandle) });
const hex = (v: number) => '0x' + v.toString(16);

function remapped(r: InterruptResult) {
  assert.equal(r.outcome, 'remapped', `expected a remapped interrupt, got ${JSON.stringify(r.ok ? r : { reason: hex(r.reason), trace: r.trace?.map((s) => s.check) })}`);
  if (r.outcome !== 'remapped') throw new Error('unreachable');
  return r;
}

/**
 * Sends the interrupt, then checks what a user would look at: the fault code with Linux's string, the fault
 * recording register (SID, the interrupt index in FI bits 63:48, T = 0, no PASID) and the failing trace step.
 */
function expectIrFault(r: Rig, req: InterruptRequest, code: number, failing: string | RegExp, index: number): InterruptFault {
  const t = r.unit.interrupt(req, { trace: true });
  assert.equal(t.ok, false, `expected fault ${hex(code)}, got ${t.outcome}`);
  if (t.ok) throw new Error('unreachable');
  assert.equal(t.outcome, 'fault');
  assert.equal(hex(t.reason), hex(code), `fault reason (trace: ${t.trace?.map((s) => s.check).join(' | ')})`);
  assert.equal(t.reasonText, FAULT_REASONS.get(code)!.text);
  assert.deepEqual(linuxFaultReason(code), { text: t.reasonText, type: 'interrupt-remap' });
  assert.equal(t.recorded, true);
  const [rec, ...more] = r.unit.pendingFaults();
  assert.equal(more.length, 0);
  assert.ok(rec, 'a fault recording register holds the fault');
  assert.equal(rec.reason, code);
  assert.equal(rec.sid, req.sid);
  assert.equal(rec.pasid, null);
  assert.equal(rec.address.toString(), new U64((index & 0xffff) * 0x10000, 0).toString(), 'FI: the interrupt index in bits 63:48');
  assert.equal(rec.address.hi >>> 16, index & 0xffff);
  assert.equal(rec.write, true, 'T = 0');
  assert.equal(rec.type, 0, 'AT = 0');
  assert.equal(t.frcdIndex, rec.index);
  const bad = t.trace!.filter((s) => !s.ok);
  assert.ok(
    bad.some((s) => (typeof failing === 'string' ? s.structure === failing : failing.test(s.check))),
    `the trace names the failing step ${failing}: ${JSON.stringify(bad.map((s) => [s.structure, s.check]))}`,
  );
  assert.match(t.trace!.at(-1)!.check, new RegExp(`^fault reason 0x${code.toString(16)}: `));
  return t;
}

describe('VT-d interrupt remapping (hardware)', () => {
  describe('fault reasons (one per reason)', () => {
    it('0x20 reserved fields in the request: data[31:16] set with SHV', () => {
      const { r, table } = irRig();
      irte(r, table, 5, { vector: 0x40, dst: 1, svt: 1, sid: SID });
      const t = expectIrFault(r, { sid: SID, address: remappableMsi(5).address, data: 0x1_0000 }, 0x20, /data\[31:16\] = 0x1 must be 0/, 5);
      assert.equal(t.reads, 0, 'the entry is not read');
      assert.equal(t.trace![0]!.structure, 'interrupt-request');
      assert.deepEqual(t.trace![0]!.fields, { address: '0xfee000b8', data: '0x00010000', format: 'remappable', handle: 5, SHV: true, subhandle: 0, index: 5 });
    });

    it('0x20 is not raised without SHV: the data is then ignored', () => {
      const { r, table } = irRig();
      irte(r, table, 5, { vector: 0x40, dst: 1 });
      const m = remappableMsi(5, 0, false);
      assert.equal(remapped(r.unit.interrupt({ sid: SID, address: m.address, data: 0xffff_ffff })).index, 5);
    });

    it('0x21 index beyond the table size: handle, handle bit 15 and handle + subhandle', () => {
      const { r } = irRig({ size: 7 }); // 256 entries
      const t = expectIrFault(r, msi(256), 0x21, /index 256 \(0x100\) is beyond the 256-entry table \(IRTA.S = 7\)/, 256);
      assert.equal(t.index, 256);
      clearFaults(r);
      expectIrFault(r, msi(0x8000), 0x21, /index 32768/, 0x8000);
      clearFaults(r);
      expectIrFault(r, msi(250, 10), 0x21, /handle 0xfa \+ subhandle 0xa|index 260/, 260);
    });

    it('0x22 entry not present', () => {
      const { r, table } = irRig();
      irte(r, table, 2, { vector: 0x40, dst: 1 });
      const t = expectIrFault(r, msi(3), 0x22, /P = 0: interrupt-remapping entry 3 is not present/, 3);
      const step = t.trace!.find((s) => s.structure === 'irte')!;
      assert.equal(step.entryAddress, hex(table + 3 * 16));
      assert.deepEqual(step.raw, ['0000000000000000', '0000000000000000']);
      assert.equal(t.reads, 1);
    });

    it('0x23 the table cannot be read (IRTA in a memory hole)', () => {
      const r = rig();
      r.machine.memory.addHole(HOLE, 0x10_0000);
      irTable(r, { table: HOLE, eime: true });
      const t = expectIrFault(r, msi(4), 0x23, 'ir-table', 4);
      assert.match(t.trace!.find((s) => s.structure === 'ir-table')!.check, new RegExp(`entry at ${hex(HOLE + 64)} cannot be read`));
    });

    it('0x24 reserved bits in the entry', () => {
      const { r, table } = irRig();
      irte(r, table, 6, { vector: 0x40, dst: 1 });
      const at = irteAddress(table, 6);
      r.machine.memory.write64(at, r.machine.memory.readHi(at), r.machine.memory.readLo(at) | 0x1000, 'irte.qw0');
      const t = expectIrFault(r, msi(6), 0x24, /reserved bits set: qw0\[14:12\]/, 6);
      assert.equal(t.trace!.find((s) => s.structure === 'irte')!.fields.P, true);
    });

    it('0x24 conditionally reserved fields: an x2APIC destination without EIME, reserved DLM and SVT, the posted format without CAP.PI', () => {
      const { r, table } = irRig({ eime: false });
      irte(r, table, 1, { vector: 0x40, dst: 0x0300 }); // xAPIC: APIC ID 3 in DST[15:8] is fine
      assert.equal(remapped(r.unit.interrupt(msi(1))).destination, 3);
      irte(r, table, 2, { vector: 0x40, dst: 0x3 });
      expectIrFault(r, msi(2), 0x24, /DST 0x00000003: bits 7:0 and 31:16 are reserved in xAPIC mode \(IRTA.EIME = 0\)/, 2);
      for (const [index, fields, why] of [
        [3, { vector: 0x40, dst: 0x100, deliveryMode: 3 }, /DLM 011b is a reserved delivery mode/],
        [4, { vector: 0x40, dst: 0x100, svt: 3 }, /SVT 11b is reserved/],
      ] as const) {
        clearFaults(r);
        irte(r, table, index, fields);
        expectIrFault(r, msi(index), 0x24, why, index);
      }
      clearFaults(r);
      postedIrte(r, table, 5, { vector: 0x40, descriptor: 0x1000_0040 });
      expectIrFault(r, msi(5), 0x24, /IM = 1 \(posted format\) without CAP.PI/, 5);
    });

    it('0x25 compatibility-format interrupt blocked: CFIS = 0, or EIME = 1 even with CFI', () => {
      const { r } = irRig({ eime: false });
      const compat = { sid: SID, ...compatibilityMsi({ vector: 0x31, destination: 2 }) };
      const t = expectIrFault(r, compat, 0x25, /compatibility-format request blocked: GSTS.CFIS = 0/, 0);
      assert.equal(t.index, undefined, 'a compatibility-format request has no index');

      const x2 = irRig({ eime: true, cfi: true });
      assert.equal((x2.r.unit.readRegister('GSTS').lo >>> GSTS.CFIS) & 1, 1);
      expectIrFault(x2.r, compat, 0x25, /IRTA.EIME = 1 \(x2APIC mode\)/, 0);
    });

    it('0x26 source-id verification (SVT = 01b): the requester ID, with the SQ masks', () => {
      const { r, table } = irRig();
      irte(r, table, 7, { vector: 0x40, dst: 1, svt: 1, sq: 0, sid: SID });
      const t = expectIrFault(r, { ...msi(7), sid: 0x0011 }, 0x26, /SVT = 01b: requester 00:02.1 does not match SID 00:02.0 \(SQ = 0: all 16 bits\)/, 7);
      assert.equal(t.trace!.find((s) => s.structure === 'irte')!.fields.SVT, 1);
      clearFaults(r);
      // SQ = 3 ignores the function number: 00:02.1 passes, 00:03.0 does not.
      irte(r, table, 7, { vector: 0x40, dst: 1, svt: 1, sq: 3, sid: SID });
      invalidateIec(r, { index: 7 });
      assert.equal(remapped(r.unit.interrupt({ ...msi(7), sid: 0x0011 })).vector, 0x40);
      assert.equal(remapped(r.unit.interrupt({ ...msi(7), sid: 0x0017 })).vector, 0x40);
      expectIrFault(r, { ...msi(7), sid: 0x0018 }, 0x26, /SQ = 3: all but bits 2:0/, 7);
    });

    it('0x26 source-id verification (SVT = 10b): the requester bus within SID[15:8]..SID[7:0]', () => {
      const { r, table } = irRig();
      irte(r, table, 8, { vector: 0x40, dst: 1, svt: 2, sid: (0x02 << 8) | 0x04 });
      assert.equal(remapped(r.unit.interrupt({ ...msi(8), sid: 0x0300 })).index, 8);
      assert.equal(remapped(r.unit.interrupt({ ...msi(8), sid: 0x04ff })).index, 8);
      expectIrFault(r, { ...msi(8), sid: 0x0500 }, 0x26, /requester bus 0x05 is outside buses 0x02-0x04/, 8);
      clearFaults(r);
      expectIrFault(r, { ...msi(8), sid: SID }, 0x26, /requester bus 0x00 is outside buses 0x02-0x04/, 8);
    });
  });

  describe('FPD and fault recording', () => {
    it('the entry\'s FPD suppresses the qualified faults (0x22, 0x24, 0x26), even in a not-present entry', () => {
      const { r, table } = irRig();
      const mem = r.machine.memory;
      mem.write64(irteAddress(table, 1), 0, 2, 'irte.qw0'); // P = 0, FPD = 1
      irte(r, table, 2, { fpd: true, vector: 0x40, dst: 1, svt: 3 });
      irte(r, table, 3, { fpd: true, vector: 0x40, dst: 1, svt: 1, sid: 0x0018 });
      for (const [index, code] of [[1, 0x22], [2, 0x24], [3, 0x26]] as const) {
        const t = r.unit.interrupt(msi(index), { trace: true });
        assert.ok(!t.ok && t.reason === code, `index ${index}: fault ${hex(code)}`);
        assert.equal(t.recorded, false);
        assert.equal(t.frcdIndex, undefined);
        assert.match(t.trace!.at(-1)!.check, /\(not recorded: FPD is set in the entry\)$/);
      }
      assert.equal(r.unit.pendingFaults().length, 0);
      assert.equal(r.unit.readRegister('FSTS').lo & (1 << FSTS.PPF), 0);
    });

    it('the non-qualified faults are recorded whatever FPD says', () => {
      const { r, table } = irRig({ size: 0 }); // 2 entries
      irte(r, table, 1, { fpd: true, vector: 0x40, dst: 1 });
      const t = r.unit.interrupt({ sid: SID, address: remappableMsi(1).address, data: 0x1_0000 });
      assert.ok(!t.ok && t.reason === 0x20 && t.recorded);
    });

    it('faults beyond the fault recording registers set PFO; the fault event interrupt is raised once', () => {
      const r = rig({ features: { faultRecordingRegisters: 1 } });
      irTable(r, { size: 0 });
      r.unit.writeRegister('FECTL', 0);
      r.machine.events.startRecording();
      const first = r.unit.interrupt(msi(0));
      const second = r.unit.interrupt(msi(1));
      assert.ok(!first.ok && first.recorded && first.frcdIndex === 0);
      assert.ok(!second.ok && !second.recorded && second.frcdIndex === undefined);
      assert.equal(r.unit.readRegister('FSTS').lo & 3, 3, 'PFO | PPF');
      const events = r.machine.events.stopRecording();
      assert.deepEqual(events.filter((e) => e.type === 'fault').map((e) => (e.type === 'fault' ? [e.outcome, e.interruptIndex, e.access, e.pasid] : [])), [['recorded', 0, 'write', null], ['overflow', 1, 'write', null]]);
      assert.equal(events.filter((e) => e.type === 'interrupt').length, 1);
    });
  });

  describe('results', () => {
    it('remapped (x2APIC mode): every field of the entry decoded exactly', () => {
      const { r, table } = irRig({ eime: true });
      irte(r, table, 7, { vector: 0x45, dst: 0x12345, destinationMode: 'logical', redirectionHint: true, triggerMode: 'level', deliveryMode: 1, svt: 1, sid: SID });
      const t = r.unit.interrupt(msi(7), { trace: true });
      const { trace, ...rest } = remapped(t);
      assert.deepEqual(rest, {
        ok: true,
        outcome: 'remapped',
        index: 7,
        source: 'walk',
        vector: 0x45,
        destination: 0x12345,
        destinationMode: 'logical',
        deliveryMode: 'lowest-priority',
        triggerMode: 'level',
        redirectionHint: true,
        reads: 1,
      });
      const step = trace!.find((s) => s.structure === 'irte')!;
      assert.deepEqual(step.raw, ['000123450045003d', '0000000000040010']);
      assert.equal(step.index, 7);
      assert.equal(step.table, hex(table));
      assert.equal(step.entryAddress, hex(table + 7 * 16));
      assert.deepEqual(step.fields, { P: true, FPD: false, DM: true, RH: true, TM: true, DLM: 1, AVAIL: 0, IM: false, V: 0x45, DST: 0x12345, SID: SID, SQ: 0, SVT: 1 });
      assert.equal(step.check, 'SVT = 01b: requester 00:02.0 matches SID 00:02.0 (SQ = 0: all 16 bits); remapped: vector 0x45 to x2APIC ID 0x12345 (logical, lowest-priority, level)');
    });

    it('remapped (xAPIC mode): the APIC ID from DST[15:8]; subhandles and handle bit 15 index the table', () => {
      const { r, table } = irRig({ eime: false, size: 15 });
      assert.equal(r.unit.interruptRemapTable.entries, 65536);
      irte(r, table, 10, { vector: 0x51, dst: 0x0500, deliveryMode: 4 });
      irte(r, table, 0x8001, { vector: 0x52, dst: 0xff00 });
      const a = remapped(r.unit.interrupt(msi(8, 2)));
      assert.deepEqual([a.index, a.vector, a.destination, a.deliveryMode, a.destinationMode, a.triggerMode, a.redirectionHint], [10, 0x51, 5, 'nmi', 'physical', 'edge', false]);
      assert.equal(remappableMsi(0x8001).address, 0xfee0003c);
      const b = remapped(r.unit.interrupt(msi(0x8001)));
      assert.deepEqual([b.index, b.vector, b.destination], [0x8001, 0x52, 0xff]);
    });

    it('posted (CAP.PI): the descriptor address, the vector and URG', () => {
      const { r, table } = irRig({ features: { postedInterrupts: true } });
      assert.equal(r.unit.cap.pi, 1);
      postedIrte(r, table, 9, { vector: 0x30, descriptor: 0x1_2345_6780, urgent: true, svt: 1, sid: SID });
      const t = r.unit.interrupt(msi(9), { trace: true });
      assert.equal(t.outcome, 'posted');
      if (t.outcome !== 'posted') throw new Error('unreachable');
      assert.deepEqual([t.index, t.descriptor, t.vector, t.urgent, t.source], [9, '0x123456780', 0x30, true, 'walk']);
      const step = t.trace!.find((s) => s.structure === 'irte-posted')!;
      assert.deepEqual(step.raw, ['234567800030c001', '0000000100040010']);
      assert.equal(step.fields.PDA_H, 1);
      assert.equal(step.fields.URG, true);
      // debugfs lists it in the posted half of ir_translation_struct.
      const text = renderIrTranslationStruct([r.unit]);
      assert.ok(text.includes(`Posted Interrupt supported on IOMMU: dmar0\n IR table address:${table.toString(16)}\n`), text);
      assert.ok(text.includes(` 9     00:02.0 00000001 23456780 30  0000000100040010\t234567800030c001\n`), text);
    });

    it('pass-through: remapping off (any format), or compatibility format with CFI in xAPIC mode', () => {
      const off = irRig({ enable: false });
      const m = compatibilityMsi({ vector: 0x41, destination: 3, destinationMode: 'logical', redirectionHint: true, deliveryMode: 1, triggerMode: 'level' });
      assert.deepEqual(m, { address: 0xfee0300c, data: 0xc141 });
      assert.deepEqual(off.r.unit.interrupt({ sid: SID, ...m }), {
        ok: true,
        outcome: 'pass-through',
        why: 'remapping-disabled',
        vector: 0x41,
        destination: 3,
        destinationMode: 'logical',
        deliveryMode: 'lowest-priority',
        triggerMode: 'level',
        redirectionHint: true,
        reads: 0,
      });
      const t = off.r.unit.interrupt(msi(3), { trace: true });
      assert.ok(t.outcome === 'pass-through' && t.why === 'remapping-disabled');
      assert.match(t.trace![0]!.check, /its remappable-format bit is ignored/);

      const cfi = irRig({ eime: false, cfi: true });
      const c = cfi.r.unit.interrupt({ sid: SID, ...m });
      assert.ok(c.outcome === 'pass-through' && c.why === 'compatibility-format' && c.vector === 0x41);
      assert.equal(cfi.r.unit.pendingFaults().length, 0);
    });

    it('rejects a request outside the interrupt address range (that is DMA, for translate)', () => {
      const { r } = irRig();
      assert.throws(() => r.unit.interrupt({ sid: SID, address: 0xfef0_0000, data: 0 }), RangeError);
    });

    it('probeInterrupt has no side effect: no cache fill, no fault record, no event', () => {
      const { r, table } = irRig();
      irte(r, table, 1, { vector: 0x40, dst: 1 });
      r.machine.events.startRecording();
      assert.equal(remapped(r.unit.probeInterrupt(msi(1))).source, 'walk');
      const f = r.unit.probeInterrupt(msi(2));
      assert.ok(!f.ok && f.reason === 0x22 && !f.recorded);
      assert.equal(r.machine.events.stopRecording().length, 0);
      assert.equal(r.unit.interruptEntryCache.size, 0);
      assert.equal(r.unit.pendingFaults().length, 0);
    });
  });

  describe('interrupt entry cache', () => {
    it('serves an entry from the IEC; a change in memory without an IEC invalidation is a stale use', () => {
      const { r, table } = irRig();
      irte(r, table, 4, { vector: 0x40, dst: 1 });
      assert.deepEqual([remapped(r.unit.interrupt(msi(4))).source, r.unit.interruptEntryCache.indices], ['walk', [4]]);
      const hit = remapped(r.unit.interrupt(msi(4), { trace: true }));
      assert.deepEqual([hit.source, hit.reads, hit.stale], ['interrupt-entry-cache', 0, undefined]);
      assert.equal(hit.trace!.find((s) => s.structure === 'irte')!.cached, 'interrupt-entry-cache');

      // The driver retargets the interrupt but forgets qi_flush_iec.
      irte(r, table, 4, { vector: 0x41, dst: 2 });
      const stale = remapped(r.unit.interrupt(msi(4)));
      assert.deepEqual([stale.vector, stale.destination], [0x40, 1], 'the cached entry is still used');
      assert.equal(stale.stale?.cache, 'interrupt-entry-cache');
      assert.equal(stale.stale?.entryAddress, hex(irteAddress(table, 4)));
      assert.deepEqual([stale.stale?.cached, stale.stale?.memory], [['0000000100400001'], ['0000000200410001']]);
      assert.match(stale.stale!.message, /without the IEC invalidation/);
      assert.equal(remapped(r.unit.probeInterrupt(msi(4))).vector, 0x41, 'the tables say otherwise');

      invalidateIec(r, { index: 4 });
      const fresh = remapped(r.unit.interrupt(msi(4)));
      assert.deepEqual([fresh.vector, fresh.destination, fresh.source, fresh.stale], [0x41, 2, 'walk', undefined]);
    });

    it('a cleared entry keeps delivering until the IEC is invalidated (interrupt after free without the flush)', () => {
      const { r, table } = irRig();
      irte(r, table, 4, { vector: 0x40, dst: 1 });
      remapped(r.unit.interrupt(msi(4)));
      r.machine.memory.write64(irteAddress(table, 4), 0, 0, 'irte.qw0');
      const t = remapped(r.unit.interrupt(msi(4)));
      assert.equal(t.stale?.cache, 'interrupt-entry-cache');
      invalidateIec(r, 'global');
      const f = r.unit.interrupt(msi(4));
      assert.ok(!f.ok && f.reason === 0x22 && f.stale === undefined);
    });

    it('the IEC descriptor: global, and index-selective over the 2^IM entries of the aligned block', () => {
      const { r, table } = irRig();
      for (let i = 6; i <= 17; i++) irte(r, table, i, { vector: 0x40 + i, dst: 1 });
      for (let i = 6; i <= 17; i++) r.unit.interrupt(msi(i));
      assert.equal(r.unit.interruptEntryCache.size, 12);
      r.machine.events.startRecording();
      invalidateIec(r, { index: 13, im: 3 }); // IIDX 13 with 3 low bits masked: entries 8-15
      assert.deepEqual(r.unit.interruptEntryCache.indices, [6, 7, 16, 17]);
      invalidateIec(r, { index: 16 });
      assert.deepEqual(r.unit.interruptEntryCache.indices, [6, 7, 17]);
      invalidateIec(r, 'global');
      assert.deepEqual(r.unit.interruptEntryCache.indices, []);
      const inv = r.machine.events.stopRecording().filter((e): e is Extract<HwEvent, { type: 'invalidation' }> => e.type === 'invalidation');
      assert.deepEqual(inv.map((e) => [e.descriptorType, e.granularity, e.fields.IIDX, e.fields.IM, e.dropped['interrupt-entry-cache']]), [
        ['Interrupt Entry Cache Invalidation', 'index', 13, 3, 8],
        ['Interrupt Entry Cache Invalidation', 'index', 16, 0, 1],
        ['Interrupt Entry Cache Invalidation', 'global', 0, 0, 3],
      ]);
    });

    it('an index-selective invalidation with IM above ECAP.MHMV is an invalid descriptor (IQE, IQH stays on it)', () => {
      const { r } = irRig();
      assert.equal(r.unit.ecap.mhmv, 0xf);
      const head = r.unit.invalidationQueue.head;
      invalidateIec(r, { index: 0, im: 16 });
      assert.equal((r.unit.readRegister('FSTS').lo >>> FSTS.IQE) & 1, 1);
      assert.equal(r.unit.invalidationQueue.head, head);
    });

    it('SIRTP to another table without the global IEC invalidation leaves entries of the old table in use', () => {
      const { r, table } = irRig();
      irte(r, table, 2, { vector: 0x40, dst: 1 });
      remapped(r.unit.interrupt(msi(2)));
      const other = r.machine.memory.allocContiguous(1);
      irte(r, other, 2, { vector: 0x60, dst: 3 });
      setInterruptRemapTable(r.unit, other, 7, true);
      const t = remapped(r.unit.interrupt(msi(2)));
      assert.equal(t.vector, 0x40);
      assert.match(t.stale!.message, new RegExp(`read from the table at ${hex(table)}, but IRTA now points at ${hex(other)}`));
      invalidateIec(r, 'global');
      assert.equal(remapped(r.unit.interrupt(msi(2))).vector, 0x60);
    });

    it('snapshots capture the latched table and the IEC', () => {
      const { r, table } = irRig();
      irte(r, table, 1, { vector: 0x40, dst: 1 });
      r.unit.interrupt(msi(1));
      const snap = r.machine.snapshot();
      invalidateIec(r, 'global');
      setInterruptRemapTable(r.unit, r.machine.memory.allocContiguous(1), 3, false);
      r.machine.restore(snap);
      assert.deepEqual(r.unit.interruptEntryCache.indices, [1]);
      assert.deepEqual(r.unit.interruptRemapTable, { base: table, entries: 256, eime: true });
    });
  });

  it('prints the walk as text, as DMA walks are printed', () => {
    const { r, table } = irRig();
    irte(r, table, 1, { vector: 0x40, dst: 7, svt: 1, sid: SID });
    const req = msi(1);
    assert.deepEqual(describeInterruptWalk(req, '00:02.0', r.unit.interrupt(req, { trace: true })), [
      'Interrupt: 00:02.0 writes 0x00000000 to 0xfee00038',
      ' 1. interrupt-request',
      '      fields  address=0xfee00038 data=0x00000000 format=remappable handle=1 SHV index=1',
      '      ok      remappable format: handle 0x1 + subhandle 0x0 = index 1',
      ` 2. irte[1] @ ${hex(table + 16)}`,
      // High word first, labelled, as debugfs's ir_translation_struct prints an IRTE (IRTE_high, IRTE_low).
      '      raw     hi 0x0000000000040010, lo 0x0000000700400001',
      '      fields  P V=0x40 DST=7 SID=0x10 SVT=1',
      '      ok      SVT = 01b: requester 00:02.0 matches SID 00:02.0 (SQ = 0: all 16 bits); remapped: vector 0x40 to x2APIC ID 0x7 (physical, fixed, edge)',
      'Result: vector 0x40 to APIC ID 0x7 (physical, fixed, edge); remapped by IRTE 1',
    ]);
  });

  it('emits an interrupt-remap event per request, with the fault event for a blocked one', () => {
    const { r, table } = irRig();
    irte(r, table, 1, { vector: 0x40, dst: 7 });
    r.machine.events.startRecording();
    r.unit.interrupt(msi(1));
    r.unit.interrupt(msi(2));
    const events = r.machine.events.stopRecording();
    const ir = events.filter((e): e is Extract<HwEvent, { type: 'interrupt-remap' }> => e.type === 'interrupt-remap');
    assert.deepEqual(ir.map(({ seq: _s, ...e }) => e), [
      { type: 'interrupt-remap', unit: 'dmar0', sid: SID, address: '0xfee00038', data: '0x0', index: 1, outcome: 'remapped', source: 'walk', vector: 0x40, destination: 7, descriptor: null, fault: null },
      { type: 'interrupt-remap', unit: 'dmar0', sid: SID, address: '0xfee00058', data: '0x0', index: 2, outcome: 'fault', source: null, vector: null, destination: null, descriptor: null, fault: 0x22 },
    ]);
    const fault = events.find((e) => e.type === 'fault');
    assert.ok(fault && fault.type === 'fault' && fault.reason === 0x22 && fault.interruptIndex === 2 && fault.frcdIndex === 0);
  });

});

// ---------------------------------------------------------------------------------------------------------
// Driver side
// ---------------------------------------------------------------------------------------------------------

function platform(o: { features?: VtdFeatures; kernel?: KernelOptions } = {}) {
  const m = new Machine();
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features: o.features });
  m.addEndpoint('00:02.0', {}, 'dmar0');
  m.addEndpoint('00:03.0', {}, 'dmar0');
  m.events.startRecording();
  const k = new IommuKernel(m, { interruptRemapping: true, ...o.kernel }).boot();
  const boot = m.events.stopRecording();
  return { m, k, unit: vtdUnitOf(m, 'dmar0'), boot };
}

describe('driver: intel_irq_remapping', () => {
  it('boots with IR: table, IRTA (S = 15, EIME), SIRTP, global IEC flush, IRE without CFI, and the DMAR-IR lines', () => {
    const { k, unit, boot } = platform();
    const table = k.irq!.tableOf(k.iommus[0]!)!.base;
    assert.equal(table % 0x10_0000, 0, 'the 1 MiB table is naturally aligned');
    assert.equal(unit.readRegister('IRTA').toString(), new U64(0, table + 0x800 + 0xf).toString());
    const gsts = unit.readRegister('GSTS').lo;
    assert.deepEqual([(gsts >>> GSTS.IRTPS) & 1, (gsts >>> GSTS.IRES) & 1, (gsts >>> GSTS.CFIS) & 1], [1, 1, 0]);
    assert.deepEqual(unit.interruptRemapTable, { base: table, entries: 65536, eime: true });
    const iec = boot.filter((e) => e.type === 'invalidation' && e.descriptorType === 'Interrupt Entry Cache Invalidation');
    assert.deepEqual(iec.map((e) => e.type === 'invalidation' && e.granularity), ['global']);
    const text = k.log.lines.map((l) => l.text);
    const at = (s: string) => text.indexOf(s);
    assert.ok(at('DMAR-IR: Queued invalidation will be enabled to support x2apic and Intr-remapping.') > 0);
    assert.ok(at('DMAR-IR: Enabled IRQ remapping in x2apic mode') > at('DMAR-IR: Queued invalidation will be enabled to support x2apic and Intr-remapping.'));
    assert.ok(at('DMAR: dmar0: Using Queued invalidation') > at('DMAR-IR: Enabled IRQ remapping in x2apic mode'));
  });

  it('allocMsi writes a verified IRTE, flushes its IEC entry, and the device\'s interrupt is remapped to it', () => {
    const { k, m, unit } = platform();
    let a!: ReturnType<IommuKernel['allocMsi']>;
    const descs = descriptorsDuring(m, () => (a = k.allocMsi('00:02.0', { vector: 0x41, destination: 2 })));
    assert.deepEqual(descs, ['iec_inv G=1 IIDX=0 IM=0']);
    assert.deepEqual([a.remapped, a.index, a.mask, hex(a.address), a.data], [true, 0, 0, '0xfee00018', 0]);
    const t = remapped(k.interrupt('00:02.0', { address: a.address, data: a.data }));
    assert.deepEqual([t.index, t.vector, t.destination, t.destinationMode, t.deliveryMode, t.triggerMode, t.redirectionHint], [0, 0x41, 2, 'physical', 'fixed', 'edge', true]);

    // debugfs ir_translation_struct shows the entry: index, SID, destination, vector, then IRTE high and low.
    const table = unit.interruptRemapTable.base;
    assert.equal(
      renderIrTranslationStruct([unit]),
      `Remapped Interrupt supported on IOMMU: dmar0\n IR table address:${table.toString(16)}\n Entry SrcID   DstID    Vct IRTE_high\t\tIRTE_low\n` +
        ` 0     00:02.0 00000002 41  0000000000040010\t0000000200410009\n\n****\n\n`,
    );
  });

  it('multi-MSI: an aligned block of entries, one subhandle per vector', () => {
    const { k } = platform();
    k.allocMsi('00:02.0', { vector: 0x30, destination: 0 });
    k.allocMsi('00:02.0', { vector: 0x31, destination: 0 });
    const a = k.allocMsi('00:03.0', { vector: 0x50, destination: 1, count: 3 });
    assert.deepEqual([a.index, a.mask, a.vectors.map((v) => [v.index, v.subhandle, v.data, v.vector])], [4, 2, [[4, 0, 0, 0x50], [5, 1, 1, 0x51], [6, 2, 2, 0x52]]]);
    const t = remapped(k.interrupt('00:03.0', { address: a.address, data: a.data | 2 }));
    assert.deepEqual([t.index, t.vector], [6, 0x52]);
  });

  // The kernel's formats per version (dmar_fault_do_one; boundaries and commits in driver/log.ts FORMAT_CHANGES).
  for (const [version, expected] of [
    ['6.12', ['DMAR: DRHD: handling fault status reg 2', 'DMAR: [INTR-REMAP] Request device [00:02.0] fault index 0x0 [fault reason 0x25] Blocked a compatibility format interrupt request']],
    ['5.14', ['DMAR: DRHD: handling fault status reg 2', 'DMAR: [INTR-REMAP] Request device [0x00:0x02.0] fault index 0x0 [fault reason 0x25] Blocked a compatibility format interrupt request']],
    ['5.4', ['DMAR: DRHD: handling fault status reg 2', 'DMAR: [INTR-REMAP] Request device [00:02.0] fault index 0 [fault reason 37] Blocked a compatibility format interrupt request']],
    ['4.1', ['dmar: DRHD: handling fault status reg 2', 'dmar: INTR-REMAP: Request device [[00:02.0] fault index 0\nINTR-REMAP:[fault reason 37] Blocked a compatibility format interrupt request']],
  ] as const) {
    it(`a blocked compatibility-format interrupt prints the ${version} fault line`, () => {
      const { k, unit } = platform({ kernel: { version } });
      const r = k.interrupt('00:02.0', compatibilityMsi({ vector: 0x31, destination: 0 }));
      assert.ok(!r.ok && r.reason === 0x25 && r.recorded);
      assert.deepEqual(k.log.lines.slice(-expected.length).map((l) => l.text), expected);
      assert.equal(unit.pendingFaults().length, 0, 'the handler cleared the record');
    });
  }

  it('an interrupt after freeMsi faults 0x22, one from another requester 0x26, each with its index', () => {
    const { k } = platform();
    k.allocMsi('00:02.0', { vector: 0x30, destination: 0 });
    const a = k.allocMsi('00:02.0', { vector: 0x31, destination: 0 });
    const spoof = k.interrupt('00:03.0', { address: a.address, data: a.data });
    assert.ok(!spoof.ok && spoof.reason === 0x26);
    assert.equal(k.log.lines.at(-1)!.text, 'DMAR: [INTR-REMAP] Request device [00:03.0] fault index 0x1 [fault reason 0x26] Blocked an interrupt request due to source-id verification failure');
    k.freeMsi(a);
    const late = k.interrupt('00:02.0', { address: a.address, data: a.data });
    assert.ok(!late.ok && late.reason === 0x22 && late.stale === undefined, 'free_irte flushed the IEC');
    assert.equal(k.log.lines.at(-1)!.text, 'DMAR: [INTR-REMAP] Request device [00:02.0] fault index 0x1 [fault reason 0x22] Present field in the IRTE entry is clear');
    assert.deepEqual(dmarFaultLines({ sid: 0x0010, address: '1000000000000', reason: 0x22, write: true, index: 1 }, '6.12'), [k.log.lines.at(-1)!.text]);
  });

  it('xAPIC mode: no EIME, the APIC ID in DST[15:8]; a unit without ECAP.EIM forces it', () => {
    const { k, unit } = platform({ kernel: { x2apic: false } });
    assert.ok(k.log.lines.some((l) => l.text === 'DMAR-IR: Enabled IRQ remapping in xapic mode'));
    assert.equal(unit.readRegister('IRTA').lo & 0xfff, 0xf);
    const a = k.allocMsi('00:02.0', { vector: 0x41, destination: 2 });
    assert.ok(renderIrTranslationStruct([unit]).includes(' 0     00:02.0 00000200 41  0000000000040010\t0000020000410009\n'));
    assert.equal(remapped(k.interrupt('00:02.0', a)).destination, 2);

    const noEim = platform({ features: { extendedInterruptMode: false } });
    const lines = noEim.k.log.lines.map((l) => l.text);
    assert.ok(lines.includes('DMAR-IR: dmar0 does not support EIM'));
    assert.ok(lines.includes('DMAR-IR: Enabled IRQ remapping in xapic mode'));
    assert.ok(!lines.some((l) => l.startsWith('DMAR-IR: Queued invalidation will be enabled')));
  });

  it('off by default: no table, no IRTA; MSIs in compatibility format pass through', () => {
    const { k, unit } = platform({ kernel: { interruptRemapping: false } });
    assert.equal(k.irq, undefined);
    assert.equal(unit.readRegister('IRTA').toString(), U64.ZERO.toString());
    assert.ok(!k.log.lines.some((l) => l.text.startsWith('DMAR-IR:')));
    const a = k.allocMsi('00:02.0', { vector: 0x41, destination: 2 });
    assert.deepEqual([a.remapped, hex(a.address), hex(a.data)], [false, '0xfee02000', '0x41']);
    const t = k.interrupt('00:02.0', a);
    assert.ok(t.outcome === 'pass-through' && t.why === 'remapping-disabled' && t.vector === 0x41 && t.destination === 2);
    assert.ok(renderIrTranslationStruct([unit]).startsWith('Remapped Interrupt supported on IOMMU: dmar0\nInterrupt Remapping is not enabled\n'));
  });
});
