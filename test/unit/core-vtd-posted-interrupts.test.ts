import * as assert from 'node:assert/strict';
import type { HwEvent } from '../../src/core/hw/events';
import type { PhysicalMemory } from '../../src/core/hw/memory';
import { Machine } from '../../src/core/hw/machine';
import type { InterruptFault, InterruptPosted, InterruptRequest, InterruptResult } from '../../src/core/hw/types';
import { renderIrTranslationStruct } from '../../src/core/driver/debugfs';
import { KernelError } from '../../src/core/driver/errors';
import { IommuKernel } from '../../src/core/driver/kernel';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { FAULT_REASONS, linuxFaultReason } from '../../src/core/vtd/fault-reasons';
import { remappableMsi } from '../../src/core/vtd/interrupt-remap';
import { irteAddress, writePiDescriptor, type PiDescriptorFields } from '../../src/core/vtd/tables';
import { vtdUnitOf, vtdUnits } from '../../src/core/vtd/factory';
import { U64 } from '../../src/core/u64';
import { descriptorsDuring } from '../support/descriptors';
import { device, invalidateIec, irTable, postedIrte, rig, type Rig } from '../support/vtd';

// VT-d interrupt posting: the posted-interrupt descriptor (spec 9.12; Linux struct pi_desc in
// arch/x86/include/asm/posted_intr.h: u32 pir[8], then u16 notifications (ON bit 0, SN bit 1), u8 nv, u8 rsvd,
// u32 ndst, u32 rsvd[6]) and the hardware's update of it (spec 5.2, "Interrupt-Posting Hardware Operation").

const SID = 0x0010; // 00:02.0
const HOLE = 0x2000_0000_0000;
const NV = 0xf2; // the notification vector KVM programs for a running vCPU (POSTED_INTR_VECTOR)
const hex = (v: number) => '0x' + v.toString(16);
const msi = (index: number): InterruptRequest => ({ sid: SID, ...remappableMsi(index) });

function piRig(o: { eime?: boolean; features?: VtdFeatures } = {}) {
  const r = rig({ features: { postedInterrupts: true, ...o.features } });
  device(r, '00:02.0');
  const table = irTable(r, { size: 7, eime: o.eime ?? true });
  const desc = r.machine.memory.allocPage() + 0x40; // 64-byte aligned, not page aligned
  return { r, table, desc };
}

function posted(t: InterruptResult): InterruptPosted {
  assert.equal(t.outcome, 'posted', `expected a posted interrupt, got ${JSON.stringify(t.ok ? t : { reason: hex(t.reason), trace: t.trace?.map((s) => s.check) })}`);
  if (t.outcome !== 'posted') throw new Error('unreachable');
  return t;
}

/** The descriptor's eight 64-bit words as hex, lowest first. */
function descWords(m: PhysicalMemory, at: number): string[] {
  return Array.from({ length: 8 }, (_, q) => new U64(m.readHi(at + q * 8), m.readLo(at + q * 8)).toHex(16));
}

/** Posts vector `vv` through IRTE 9 to a descriptor set up with `d`; returns the result and the words after. */
function postOnce(d: PiDescriptorFields, vv: number, urgent: boolean, eime = true) {
  const { r, table, desc } = piRig({ eime });
  writePiDescriptor(r.machine.memory, desc, d);
  postedIrte(r, table, 9, { vector: vv, descriptor: desc, urgent, svt: 1, sid: SID });
  const t = posted(r.unit.interrupt(msi(9), { trace: true }));
  return { t, r, desc, after: descWords(r.machine.memory, desc) };
}

describe('VT-d posted interrupts (hardware)', () => {
  describe('the posted-interrupt descriptor layout', () => {
    it('PIR bit n is vector n; ON bit 256, SN 257, NV 279:272, NDST 319:288 (struct pi_desc offsets)', () => {
      const r = rig();
      const at = r.machine.memory.allocPage() + 0x80;
      writePiDescriptor(r.machine.memory, at, { pending: [0x00, 0x1f, 0x20, 0x41, 0xff], on: true, sn: true, nv: 0xf2, ndst: 0x0300 });
      const m = r.machine.memory;
      // pir[0] (bytes 0-3) holds vectors 0 and 31, pir[1] vector 32, pir[2] vector 65 (0x41), pir[7] vector 255.
      assert.deepEqual(Array.from({ length: 8 }, (_, i) => hex(m.read32(at + i * 4))), ['0x80000001', '0x1', '0x2', '0x0', '0x0', '0x0', '0x0', '0x80000000']);
      // Bytes 32-35: notifications (u16: ON bit 0, SN bit 1), nv (byte 34), rsvd (byte 35); bytes 36-39: ndst.
      assert.equal(hex(m.read32(at + 32)), '0xf20003');
      assert.equal(hex(m.read32(at + 36)), '0x300');
      for (let b = 40; b < 64; b += 4) assert.equal(m.read32(at + b), 0, `rsvd at byte ${b}`);
      assert.deepEqual(descWords(r.machine.memory, at), ['0000000180000001', '0000000000000002', '0000000000000000', '8000000000000000', '0000030000f20003', '0000000000000000', '0000000000000000', '0000000000000000']);
    });

    it('the posted-format IRTE: URG bit 14, IM bit 15, VV 23:16, PDA_L 63:38 (address bits 31:6), PDA_H 127:96 (struct irte)', () => {
      const { r, table } = piRig();
      postedIrte(r, table, 3, { vector: 0x5a, descriptor: 0x1_2345_6780, urgent: true, svt: 1, sq: 2, sid: SID, fpd: true, avail: 0xa });
      const at = irteAddress(table, 3);
      const m = r.machine.memory;
      // low: P 0, FPD 1, avail 11:8, urgent 14, pst 15, vector 23:16, pda_l = 0x23456780 >> 6 at 63:38.
      assert.equal(new U64(m.readHi(at), m.readLo(at)).toHex(16), hex(0x2345_6780).slice(2) + hex((0x5a << 16) | (1 << 15) | (1 << 14) | (0xa << 8) | 3).slice(2).padStart(8, '0'));
      // high: sid 15:0, sq 17:16, svt 19:18, pda_h 63:32.
      assert.equal(new U64(m.readHi(at + 8), m.readLo(at + 8)).toHex(16), '00000001' + hex(SID | (2 << 16) | (1 << 18)).slice(2).padStart(8, '0'));
      const t = posted(r.unit.interrupt(msi(3)));
      assert.deepEqual([t.descriptor, t.vector, t.urgent], ['0x123456780', 0x5a, true]);
    });
  });

  describe('the hardware update', () => {
    // [case, descriptor before, URG, notification, ON after]
    const rules: [string, PiDescriptorFields, boolean, InterruptPosted['notification'], boolean][] = [
      ['ON = 0, SN = 0: ON set and a notification sent', { nv: NV, ndst: 3 }, false, 'sent', true],
      ['ON = 0, SN = 0, URG = 1: the same', { nv: NV, ndst: 3 }, true, 'sent', true],
      ['ON = 1: no new notification (one is outstanding)', { nv: NV, ndst: 3, on: true }, false, 'outstanding', true],
      ['ON = 1, URG = 1: no new notification either', { nv: NV, ndst: 3, on: true }, true, 'outstanding', true],
      ['SN = 1, URG = 0: PIR only, the notification suppressed, ON stays 0', { nv: NV, ndst: 3, sn: true }, false, 'suppressed', false],
      ['SN = 1, URG = 1: an urgent interrupt notifies anyway', { nv: NV, ndst: 3, sn: true }, true, 'sent', true],
      ['SN = 1, ON = 1: nothing but PIR', { nv: NV, ndst: 3, sn: true, on: true }, false, 'outstanding', true],
    ];
    for (const [name, before, urgent, notification, onAfter] of rules) {
      it(name, () => {
        const { t, after } = postOnce(before, 0x41, urgent);
        assert.deepEqual(
          [t.notification, t.onWasSet, t.suppressNotification, t.pirWasSet, t.notificationVector, t.notificationDestination],
          [notification, before.on ?? false, before.sn ?? false, false, NV, 3],
        );
        // PIR[0x41] is bit 1 of qword 1; qword 4 keeps NV and NDST, and ON (bit 0) is set or not.
        assert.equal(after[1], '0000000000000002');
        const control = (3 * 2 ** 32 + (NV << 16) + (before.sn ? 2 : 0) + (onAfter ? 1 : 0)).toString(16).padStart(16, '0');
        assert.equal(after[4], control);
        assert.deepEqual([after[0], after[2], after[3], after[5], after[6], after[7]], Array(6).fill('0000000000000000'));
        const step = t.trace!.at(-1)!;
        assert.equal(step.structure, 'posted-interrupt-descriptor');
        assert.equal(step.ok, true);
        assert.match(step.check, /^PIR\[0x41\] set; /);
      });
    }

    it('a vector already pending merges: PIR unchanged, the rest of the descriptor untouched', () => {
      const { t, after } = postOnce({ nv: NV, ndst: 3, on: true, pending: [0x20, 0x41, 0xee] }, 0x41, false);
      assert.deepEqual([t.pirWasSet, t.notification], [true, 'outstanding']);
      assert.deepEqual(after.slice(0, 4), ['0000000100000000', '0000000000000002', '0000000000000000', '0000400000000000']);
      assert.match(t.trace!.at(-1)!.check, /^PIR\[0x41\] was already set; ON = 1: a notification is already outstanding, none is sent$/);
      assert.equal(t.trace!.at(-1)!.fields.PIR, '0x20 0x41 0xee');
    });

    it('NDST is the APIC ID in bits 15:8 in xAPIC mode, all 32 bits in x2APIC mode', () => {
      const x = postOnce({ nv: NV, ndst: 0x0500 }, 0x30, false, false).t;
      assert.deepEqual([x.notification, x.notificationDestination], ['sent', 5]);
      assert.match(x.trace!.at(-1)!.check, /notification event: vector 0xf2 to APIC ID 0x5$/);
      const x2 = postOnce({ nv: NV, ndst: 0x12345 }, 0x30, false, true).t;
      assert.deepEqual([x2.notification, x2.notificationDestination], ['sent', 0x12345]);
      assert.match(x2.trace!.at(-1)!.check, /to x2APIC ID 0x12345$/);
    });

    it('writes only what changed, as one update: the PIR qword and the control qword; the event says what happened', () => {
      const { r, table, desc } = piRig();
      writePiDescriptor(r.machine.memory, desc, { nv: NV, ndst: 7, pending: [0x90] });
      postedIrte(r, table, 2, { vector: 0x41, descriptor: desc });
      r.machine.events.startRecording();
      posted(r.unit.interrupt(msi(2)));
      posted(r.unit.interrupt(msi(2))); // ON now set: PIR only, and PIR[0x41] is already set, so nothing to write
      const events = r.machine.events.stopRecording();
      const writes = events.filter((e): e is Extract<HwEvent, { type: 'table-write' }> => e.type === 'table-write');
      assert.deepEqual(writes.map((e) => [e.what, e.address, e.before, e.after]), [
        ['pi-desc.pir[1]', hex(desc + 8), '0x0000000000000000', '0x0000000000000002'],
        ['pi-desc.control', hex(desc + 32), '0x0000000700f20000', '0x0000000700f20001'],
      ]);
      const pi = events.filter((e): e is Extract<HwEvent, { type: 'posted-interrupt' }> => e.type === 'posted-interrupt');
      assert.deepEqual(pi.map(({ seq: _s, ...e }) => e), [
        { type: 'posted-interrupt', unit: 'dmar0', sid: SID, index: 2, descriptor: hex(desc), vector: 0x41, urgent: false, pirWasSet: false, onWasSet: false, suppressNotification: false, notification: 'sent', notificationVector: NV, notificationDestination: 7 },
        { type: 'posted-interrupt', unit: 'dmar0', sid: SID, index: 2, descriptor: hex(desc), vector: 0x41, urgent: false, pirWasSet: true, onWasSet: true, suppressNotification: false, notification: 'outstanding', notificationVector: NV, notificationDestination: 7 },
      ]);
      // The request's interrupt-remap event follows, with the descriptor address.
      const ir = events.filter((e) => e.type === 'interrupt-remap');
      assert.ok(ir.every((e) => e.type === 'interrupt-remap' && e.outcome === 'posted' && e.descriptor === hex(desc) && e.vector === 0x41));
      assert.ok(events.findIndex((e) => e.type === 'posted-interrupt') < events.findIndex((e) => e.type === 'interrupt-remap'));
    });

    it('after software clears ON (pi_test_and_clear_on), the next interrupt notifies again; the descriptor is read afresh each time', () => {
      const { r, table, desc } = piRig();
      const m = r.machine.memory;
      writePiDescriptor(m, desc, { nv: NV, ndst: 1 });
      postedIrte(r, table, 4, { vector: 0x51, descriptor: desc });
      assert.equal(posted(r.unit.interrupt(msi(4))).notification, 'sent');
      assert.equal(posted(r.unit.interrupt(msi(4))).notification, 'outstanding');
      // The vCPU syncs PIR and clears ON; the VMM moves the vCPU (NDST) and uses the wakeup vector (NV).
      writePiDescriptor(m, desc, { nv: 0xf1, ndst: 6 });
      const t = posted(r.unit.interrupt(msi(4)));
      assert.deepEqual([t.notification, t.pirWasSet, t.notificationVector, t.notificationDestination, t.source], ['sent', false, 0xf1, 6, 'interrupt-entry-cache']);
      assert.equal(t.stale, undefined, 'a descriptor change is no stale use: the hardware does not cache descriptors');
      assert.equal(t.reads, 1, 'the descriptor read (the IRTE came from the IEC)');
    });

    it('probeInterrupt says what would happen and writes nothing', () => {
      const { r, table, desc } = piRig();
      writePiDescriptor(r.machine.memory, desc, { nv: NV, ndst: 2 });
      postedIrte(r, table, 5, { vector: 0x61, descriptor: desc });
      const before = descWords(r.machine.memory, desc);
      r.machine.events.startRecording();
      const t = posted(r.unit.probeInterrupt(msi(5), { trace: true }));
      assert.equal(r.machine.events.stopRecording().length, 0);
      assert.deepEqual([t.notification, t.pirWasSet], ['sent', false]);
      assert.match(t.trace!.at(-1)!.check, /\(probe: the descriptor is not written\)$/);
      assert.deepEqual(descWords(r.machine.memory, desc), before);
    });
  });

  describe('faults', () => {
    /** The request faults with `code`, recorded with the interrupt index in FI 63:48, T = 0, the requester. */
    function expectPostFault(r: Rig, req: InterruptRequest, code: number, failing: RegExp, index: number): InterruptFault {
      const t = r.unit.interrupt(req, { trace: true });
      assert.equal(t.ok, false, `expected fault ${hex(code)}, got ${t.outcome}`);
      if (t.ok) throw new Error('unreachable');
      assert.equal(hex(t.reason), hex(code));
      // Linux's irq_remap_fault_reasons ends at 0x26: dmar_get_fault_reason gives "Unknown", type UNKNOWN.
      assert.deepEqual(linuxFaultReason(code), { text: 'Unknown', type: 'unknown' });
      assert.equal(t.reasonText, 'Unknown');
      assert.equal(t.recorded, true);
      const [rec, ...more] = r.unit.pendingFaults();
      assert.equal(more.length, 0);
      assert.ok(rec);
      assert.deepEqual([rec.reason, rec.sid, rec.pasid, rec.write, rec.address.hi >>> 16, rec.address.hi & 0xffff, rec.address.lo], [code, req.sid, null, true, index, 0, 0]);
      assert.equal(t.frcdIndex, rec.index);
      const step = t.trace!.find((s) => s.structure === 'posted-interrupt-descriptor');
      assert.ok(step && !step.ok && failing.test(step.check), `the descriptor step fails: ${JSON.stringify(t.trace!.map((s) => s.check))}`);
      assert.equal(t.trace!.at(-1)!.check, `fault reason 0x${code.toString(16)}: ${FAULT_REASONS.get(code)!.meaning} (Linux prints "Unknown")`);
      return t;
    }

    it('0x27: the descriptor cannot be accessed (in a memory hole, or beyond the host address width)', () => {
      const { r, table } = piRig();
      r.machine.memory.addHole(HOLE, 0x1000);
      postedIrte(r, table, 6, { vector: 0x41, descriptor: HOLE + 0x40, svt: 1, sid: SID });
      expectPostFault(r, msi(6), 0x27, new RegExp(`descriptor at ${hex(HOLE + 0x40)} \\(the entry's PDA\\) cannot be accessed`), 6);
      for (const rec of r.unit.pendingFaults()) r.unit.writeRegister(r.unit.faultRecordingRegisters.base + rec.index * 16 + 8, new U64(0x8000_0000, 0));
      postedIrte(r, table, 7, { vector: 0x41, descriptor: 2 ** 46 });
      expectPostFault(r, msi(7), 0x27, /cannot be accessed/, 7);
    });

    it('0x28: reserved bits in the descriptor (258-271, 280-287, 320-511; NDST outside 15:8 in xAPIC mode); nothing is written', () => {
      for (const [eime, patch, why] of [
        [true, (c: number[]) => (c[8] = 4), /qw4\[15:2\]/],
        [true, (c: number[]) => (c[8] = 1 << 24), /qw4\[31:24\]/],
        [true, (c: number[]) => (c[11] = 1), /qw5\[63:0\]/],
        [true, (c: number[]) => (c[15] = 0x8000_0000), /qw7\[63:0\]/],
        [false, (c: number[]) => (c[9] = 0x0003), /NDST 0x00000003: bits 7:0 and 31:16 are reserved in xAPIC mode/],
      ] as const) {
        const { r, table, desc } = piRig({ eime });
        const m = r.machine.memory;
        writePiDescriptor(m, desc, { nv: NV, ndst: 0x0100 });
        const words = Array.from({ length: 16 }, (_, i) => (i % 2 ? m.readHi(desc + (i >> 1) * 8) : m.readLo(desc + (i >> 1) * 8)));
        patch(words);
        for (let q = 0; q < 8; q++) m.write64(desc + q * 8, words[q * 2 + 1]! >>> 0, words[q * 2]! >>> 0, 'pi-desc');
        const before = descWords(r.machine.memory, desc);
        postedIrte(r, table, 8, { vector: 0x41, descriptor: desc });
        expectPostFault(r, msi(8), 0x28, new RegExp(`reserved bits set: .*${why.source}`), 8);
        assert.deepEqual(descWords(r.machine.memory, desc), before, 'PIR is not set');
      }
      // The same NDST is fine in x2APIC mode.
      assert.equal(postOnce({ nv: NV, ndst: 0x0003 }, 0x41, false, true).t.notificationDestination, 3);
    });

    it('0x27 and 0x28 are qualified: the IRTE\'s FPD suppresses recording', () => {
      const { r, table, desc } = piRig();
      r.machine.memory.addHole(HOLE, 0x1000);
      postedIrte(r, table, 1, { vector: 0x41, descriptor: HOLE, fpd: true });
      writePiDescriptor(r.machine.memory, desc, { nv: NV, ndst: 1 });
      r.machine.memory.write64(desc + 40, 0, 1, 'pi-desc');
      postedIrte(r, table, 2, { vector: 0x41, descriptor: desc, fpd: true });
      for (const [index, code] of [[1, 0x27], [2, 0x28]] as const) {
        const t = r.unit.interrupt(msi(index), { trace: true });
        assert.ok(!t.ok && t.reason === code && !t.recorded && t.frcdIndex === undefined, `index ${index}`);
        assert.match(t.trace!.at(-1)!.check, /\(not recorded: FPD is set in the entry\)$/);
      }
      assert.equal(r.unit.pendingFaults().length, 0);
    });
  });

  describe('interrupt entry cache', () => {
    it('caches a posted IRTE: a new PDA without the IEC invalidation still posts to the old descriptor (a stale use)', () => {
      const { r, table, desc } = piRig();
      const m = r.machine.memory;
      const other = m.allocPage();
      writePiDescriptor(m, desc, { nv: NV, ndst: 1 });
      writePiDescriptor(m, other, { nv: NV, ndst: 2 });
      postedIrte(r, table, 9, { vector: 0x41, descriptor: desc });
      assert.deepEqual([posted(r.unit.interrupt(msi(9))).source, r.unit.interruptEntryCache.indices], ['walk', [9]]);

      // The vCPU moved to another descriptor, but the IEC flush was forgotten.
      postedIrte(r, table, 9, { vector: 0x42, descriptor: other });
      const stale = posted(r.unit.interrupt(msi(9)));
      assert.deepEqual([stale.source, stale.descriptor, stale.vector, stale.notificationDestination], ['interrupt-entry-cache', hex(desc), 0x41, 1]);
      assert.equal(stale.stale?.cache, 'interrupt-entry-cache');
      assert.equal(stale.stale?.entryAddress, hex(irteAddress(table, 9)));
      assert.equal(descWords(r.machine.memory, other)[1], '0000000000000000', 'the new descriptor saw nothing');

      invalidateIec(r, { index: 9 });
      const fresh = posted(r.unit.interrupt(msi(9)));
      assert.deepEqual([fresh.source, fresh.descriptor, fresh.vector, fresh.notificationDestination, fresh.stale], ['walk', hex(other), 0x42, 2, undefined]);
      assert.equal(descWords(r.machine.memory, other)[1], '0000000000000004', 'PIR[0x42]');
    });
  });
});

// ---------------------------------------------------------------------------------------------------------
// Driver side: intel_ir_set_vcpu_affinity
// ---------------------------------------------------------------------------------------------------------

function platform(features: VtdFeatures = { postedInterrupts: true }) {
  const m = new Machine();
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features });
  m.addEndpoint('00:02.0', {}, 'dmar0');
  m.addEndpoint('00:03.0', {}, 'dmar0');
  const k = new IommuKernel(m, { interruptRemapping: true }).boot();
  return { m, k, unit: vtdUnitOf(m, 'dmar0') };
}

describe('driver: posting an assigned device\'s interrupt to a vCPU', () => {
  it('switches the IRTE to posted format (URG = 0, the guest vector, PDA) keeping SID/SQ/SVT, flushes its IEC entry, and back', () => {
    const { m, k, unit } = platform();
    assert.equal(k.irq!.posting, true);
    const a = k.allocMsi('00:02.0', { vector: 0x41, destination: 2 });
    assert.equal(k.interrupt('00:02.0', a).outcome, 'remapped'); // now in the IEC
    const desc = 0x1_2345_6780;
    writePiDescriptor(m.memory, desc, { nv: NV, ndst: 2 });
    const descs = descriptorsDuring(m, () => k.irq!.setVcpuAffinity(a, 0, { piDescAddr: desc, vector: 0x55 }));
    assert.deepEqual(descs, ['iec_inv G=1 IIDX=0 IM=0']);
    // The row debugfs prints for it: index, SID, pda_h, pda_l << 6, vector, IRTE high, IRTE low. Low: P, pst (15),
    // vector 0x55 (23:16), pda_l 63:38; high: SID 0x10, SVT 01b (bits 19:18), pda_h 1.
    assert.ok(renderIrTranslationStruct([unit]).includes(' 0     00:02.0 00000001 23456780 55  0000000100040010\t2345678000558001\n'), renderIrTranslationStruct([unit]));
    const t = posted(k.interrupt('00:02.0', a));
    assert.deepEqual([t.source, t.descriptor, t.vector, t.urgent, t.notification, t.notificationVector, t.notificationDestination], ['walk', '0x123456780', 0x55, false, 'sent', NV, 2]);
    assert.equal(descWords(m.memory, desc)[1], '0000000000200000', 'PIR[0x55]: bit 21 of qword 1');

    // Source-id verification still applies to the posted entry.
    const spoof = k.interrupt('00:03.0', a);
    assert.ok(!spoof.ok && spoof.reason === 0x26);

    // KVM stops posting (the vCPU is no longer the only target): the remapped entry again, flushed.
    assert.deepEqual(descriptorsDuring(m, () => k.irq!.setVcpuAffinity(a, 0, null)), ['iec_inv G=1 IIDX=0 IM=0']);
    const back = k.interrupt('00:02.0', a);
    assert.ok(back.outcome === 'remapped' && back.vector === 0x41 && back.destination === 2 && back.source === 'walk');
  });

  it('an inaccessible pi_desc faults 0x27, which Linux 6.12 prints in the DMA form with "Unknown"', () => {
    const { m, k } = platform();
    m.memory.addHole(HOLE, 0x1000);
    k.allocMsi('00:02.0', { vector: 0x40, destination: 0 });
    const a = k.allocMsi('00:02.0', { vector: 0x41, destination: 0 });
    k.irq!.setVcpuAffinity(a, 0, { piDescAddr: HOLE, vector: 0x55 });
    const t = k.interrupt('00:02.0', a);
    assert.ok(!t.ok && t.reason === 0x27 && t.recorded && t.index === 1);
    // dmar_fault_do_one: not INTR_REMAP, so "[%s NO_PASID] ... fault addr 0x%llx"; T = 0 is "DMA Write"; addr is
    // the FI field, the index in bits 63:48.
    assert.equal(k.log.lines.at(-1)!.text, 'DMAR: [DMA Write NO_PASID] Request device [00:02.0] fault addr 0x1000000000000 [fault reason 0x27] Unknown');
  });

  it('without CAP.PI there is no IRQ_POSTING_CAP: KVM would not ask, and the call fails with EOPNOTSUPP', () => {
    const { k } = platform({});
    assert.equal(k.irq!.posting, false);
    const a = k.allocMsi('00:02.0', { vector: 0x41, destination: 2 });
    assert.throws(() => k.irq!.setVcpuAffinity(a, 0, { piDescAddr: 0x1000, vector: 0x55 }), (e: unknown) => e instanceof KernelError && e.errno === 'EOPNOTSUPP');
  });

  it('rejects a pi_desc that is not 64-byte aligned, and a freed allocation', () => {
    const { k } = platform();
    const a = k.allocMsi('00:02.0', { vector: 0x41, destination: 2 });
    assert.throws(() => k.irq!.setVcpuAffinity(a, 0, { piDescAddr: 0x1020, vector: 0x55 }), (e: unknown) => e instanceof KernelError && e.errno === 'EINVAL');
    k.freeMsi(a);
    assert.throws(() => k.irq!.setVcpuAffinity(a, 0, { piDescAddr: 0x1000, vector: 0x55 }), (e: unknown) => e instanceof KernelError && e.errno === 'EINVAL');
  });
});
