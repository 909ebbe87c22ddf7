import * as assert from 'node:assert/strict';
import type { HwEvent } from '../../src/core/hw/events';
import type { PageRequestOutcome } from '../../src/core/hw/machine';
import { U64 } from '../../src/core/u64';
import { decodePageRequest, DescType, encodeDescriptor } from '../../src/core/vtd/descriptors';
import { Reg } from '../../src/core/vtd/registers';
import { enablePageRequests, enableQueuedInvalidation, submitDescriptors, writeEntry } from '../../src/core/vtd/tables';
import { device, pageTable, pasidEntry, rig, smContext } from '../support/vtd';

const SID = 0x0010;

function readPrq(r: ReturnType<typeof rig>, index: number) {
  const q = r.unit.pageRequestQueue;
  const words: number[] = [];
  for (let i = 0; i < 4; i++) words.push(r.machine.memory.readLo(q.base + index * 32 + i * 8), r.machine.memory.readHi(q.base + index * 32 + i * 8));
  return decodePageRequest(words);
}

describe('VT-d queues and fault recording', () => {
  describe('invalidation queue', () => {
    it('a wait descriptor writes its status dword, and with IF sets ICS.IWC', () => {
      const r = rig();
      const status = r.machine.memory.allocPage();
      r.machine.events.startRecording();
      submitDescriptors(r.unit, [
        { type: DescType.IOTLB, fields: { G: 1 } },
        { type: DescType.WAIT, fields: { SW: 1, IF: 1, STATUS: 0xc0ffee, ADDR: status + 4 } },
      ]);
      assert.equal(r.machine.memory.read32(status + 4), 0xc0ffee);
      assert.equal(r.unit.readRegister('ICS').lo & 1, 1);
      assert.equal(r.unit.invalidationQueue.head, 2);
      const kinds = r.machine.events.recorded().filter((e) => e.type !== 'table-write' && e.type !== 'register-write').map((e) => e.type);
      assert.deepEqual(kinds, ['invalidation', 'invalidation', 'interrupt']);
      r.unit.writeRegister('ICS', 1);
      assert.equal(r.unit.readRegister('ICS').lo & 1, 0, 'IWC is write-1-to-clear');
    });

    it('stops at a descriptor with reserved bits: IQE set, IQH left pointing at it, later ones not run', () => {
      const r = rig();
      const status = r.machine.memory.allocPage();
      const q = r.unit.invalidationQueue;
      const bad = encodeDescriptor(DescType.IOTLB, { G: 1 });
      bad[0] |= 1 << 8; // a reserved bit in qw0
      writeEntry(r.machine.memory, q.base + 0 * 32, bad);
      writeEntry(r.machine.memory, q.base + 1 * 32, encodeDescriptor(DescType.WAIT, { SW: 1, STATUS: 1, ADDR: status }));
      r.machine.events.startRecording();
      r.unit.writeRegister('IQT', 2 * 32);
      assert.equal(r.unit.readRegister('FSTS').lo & (1 << 4), 1 << 4, 'FSTS.IQE');
      assert.equal(r.unit.invalidationQueue.head, 0, 'IQH points at the bad descriptor');
      assert.equal(r.machine.memory.read32(status), 0, 'the wait after it did not run');
      const err = r.machine.events.recorded().find((e) => e.type === 'queue-error')!;
      assert.ok(err.type === 'queue-error' && err.error === 'IQE' && err.index === 0);
      // The reason the event carries is the one IQERCD latched: IQEI 4, a reserved field in a valid type.
      assert.deepEqual([err.iqei, r.unit.readRegister('IQER').lo & 0xf], [4, 4]);
      assert.match(err.message, /reserved bits set in qw0/);
      // Software repairs the slot (Linux writes a wait descriptor over it) and clears IQE: the queue resumes.
      writeEntry(r.machine.memory, q.base, encodeDescriptor(DescType.WAIT, { SW: 1, STATUS: 2, ADDR: status + 8 }));
      r.unit.writeRegister('FSTS', 1 << 4);
      assert.equal(r.machine.memory.read32(status + 8), 2);
      assert.equal(r.machine.memory.read32(status), 1);
      assert.equal(r.unit.invalidationQueue.head, 2);
    });

    it('a device-TLB invalidation to a device that never answers sets ITE with its SID', () => {
      const r = rig();
      const ep = device(r, '00:02.0', { ats: {} });
      ep.invalidationTimeout = true;
      const status = r.machine.memory.allocPage();
      submitDescriptors(r.unit, [
        { type: DescType.DEVICE_TLB, fields: { SID, QDEP: 0, ADDR: 0, S: 0 } },
        { type: DescType.WAIT, fields: { SW: 1, STATUS: 1, ADDR: status } },
      ]);
      assert.equal(r.unit.readRegister('FSTS').lo & (1 << 6), 1 << 6, 'FSTS.ITE');
      // IQERCD.ITESID is bits 47:32 (the spec's register layout; Linux DMAR_IQER_REG_ITESID = GENMASK_ULL(47, 32)).
      assert.equal(r.unit.readRegister('IQER').hi & 0xffff, SID, 'IQER.ITESID');
      assert.equal(r.unit.readRegister('IQER').hi >>> 16, 0, 'ICESID (63:48) untouched');
      assert.equal(r.machine.memory.read32(status), 0, 'the pending wait is aborted');
      ep.invalidationTimeout = false;
      r.unit.writeRegister('FSTS', 1 << 6);
      assert.equal(r.machine.memory.read32(status), 1, 'clearing ITE lets the queue go on');
    });
  });

  describe('invalidation queue: the descriptor set and its reserved fields', () => {
    // The spec's descriptor set, with each type's fields as the Linux QI_* macros place them (iommu.h):
    // [qword, msb, lsb]. The type itself is qw0[3:0] and qw0[11:9]. Every other bit is reserved.
    const TYPE_BITS: [number, number, number][] = [[0, 3, 0], [0, 11, 9]];
    const SPEC: Record<number, { name: string; base: [number, number]; fields: [number, number, number][] }> = {
      0x1: { name: 'context-cache (G=1 global)', base: [0x11, 0], fields: [[0, 5, 4], [0, 31, 16], [0, 47, 32], [0, 49, 48]] },
      0x2: { name: 'IOTLB (G=1 global)', base: [0x12, 0], fields: [[0, 5, 4], [0, 6, 6], [0, 7, 7], [0, 31, 16], [1, 5, 0], [1, 6, 6], [1, 63, 12]] },
      0x3: { name: 'device-TLB', base: [0x3, 0], fields: [[0, 15, 12], [0, 20, 16], [0, 47, 32], [0, 63, 52], [1, 0, 0], [1, 63, 12]] },
      0x4: { name: 'interrupt entry cache (global)', base: [0x4, 0], fields: [[0, 4, 4], [0, 31, 27], [0, 47, 32]] },
      0x5: { name: 'invalidation wait', base: [0x5, 0], fields: [[0, 4, 4], [0, 5, 5], [0, 6, 6], [0, 7, 7], [0, 63, 32], [1, 63, 2]] },
      0x6: { name: 'PASID-based IOTLB (G=2)', base: [0x26, 0], fields: [[0, 5, 4], [0, 31, 16], [0, 51, 32], [1, 5, 0], [1, 6, 6], [1, 63, 12]] },
      0x7: { name: 'PASID-cache (G=3 global)', base: [0x37, 0], fields: [[0, 5, 4], [0, 31, 16], [0, 51, 32]] },
      0x8: { name: 'PASID-based device-TLB', base: [0x8, 0], fields: [[0, 8, 4], [0, 15, 12], [0, 31, 16], [0, 51, 32], [0, 63, 52], [1, 0, 0], [1, 11, 11], [1, 63, 12]] },
      // QI_PGRP_PASID_P 4, QI_PGRP_RESP_CODE 15:12, QI_PGRP_DID 31:16, QI_PGRP_PASID 51:32; QI_PGRP_LPIG 2,
      // QI_PGRP_IDX 11:3 (6.12 iommu.h). VT-d rev 4.0 removed private data, so 5.10's QI_PGRP_PDP (bit 5) and
      // the private-data words in qw2/qw3 are reserved in the revision the hardware follows.
      0x9: { name: 'page group response', base: [0x9, 0], fields: [[0, 4, 4], [0, 15, 12], [0, 31, 16], [0, 51, 32], [1, 2, 2], [1, 11, 3]] },
    };
    const defined = (ranges: [number, number, number][], word: number, bit: number) => ranges.some(([w, msb, lsb]) => w === word && bit >= lsb && bit <= msb);

    /** The unit with its queue at `slot`: writes `qw` (4 qwords as [lo, hi] pairs) there and moves IQT past it. */
    function submitRaw(r: ReturnType<typeof rig>, qw: [number, number][]) {
      const q = r.unit.invalidationQueue;
      const slot = q.tail;
      writeEntry(r.machine.memory, q.base + slot * q.descSize, qw.flatMap(([lo, hi]) => [lo >>> 0, hi >>> 0]));
      r.unit.writeRegister('IQT', ((slot + 1) % q.entries) * q.descSize);
      const iqe = (r.unit.readRegister('FSTS').lo >>> 4) & 1;
      const out = { iqe, iqei: r.unit.readRegister('IQER').lo & 0xf, headStayed: r.unit.invalidationQueue.head === slot };
      if (iqe) {
        // Repair as software does: a no-op wait over the slot, then clear IQE; the queue goes on from it.
        writeEntry(r.machine.memory, q.base + slot * q.descSize, encodeDescriptor(DescType.WAIT, {}));
        r.unit.writeRegister('FSTS', 1 << 4);
      }
      return out;
    }
    const zeros = (): [number, number][] => [[0, 0], [0, 0], [0, 0], [0, 0]];

    for (let type = 0; type <= 0xf; type++) {
      const spec = SPEC[type];
      it(spec ? `type 0x${type.toString(16)} (${spec.name}) is executed` : `type 0x${type.toString(16)} is not a descriptor: IQE with IQEI 3 (invalid type), IQH left on it`, () => {
        const r = rig();
        const qw = zeros();
        qw[0] = spec ? [spec.base[0], spec.base[1]] : [type, 0];
        const status = r.machine.memory.allocPage();
        const got = submitRaw(r, qw);
        if (spec) {
          assert.deepEqual([got.iqe, r.unit.invalidationQueue.head], [0, 1]);
        } else {
          assert.deepEqual(got, { iqe: 1, iqei: 3, headStayed: true });
          // After the repair the queue runs on: a wait behind it writes its status.
          submitDescriptors(r.unit, [{ type: DescType.WAIT, fields: { SW: 1, STATUS: 7, ADDR: status } }]);
          assert.equal(r.machine.memory.read32(status), 7);
        }
      });
    }

    it('0xa, the page-stream response of VT-d 2.x (Linux QI_PSTRM_RESP_TYPE), is refused like any type outside the set', () => {
      const r = rig();
      const qw = zeros();
      // What a rev 2.x page-stream response looked like to Linux: type 0xa with a response code and a RID.
      qw[0] = [0xa | (1 << 12) | (0x10 << 16), 0];
      assert.deepEqual(submitRaw(r, qw), { iqe: 1, iqei: 3, headStayed: true });
    });

    it('types above 0xf (qw0[11:9] non-zero) are invalid types too (IQEI 3)', () => {
      const r = rig();
      for (const type of [0x11, 0x25, 0x7f]) {
        const qw = zeros();
        qw[0] = [(type & 0xf) | ((type >> 4) << 9), 0];
        assert.deepEqual(submitRaw(r, qw), { iqe: 1, iqei: 3, headStayed: true }, `type 0x${type.toString(16)}`);
      }
    });

    for (const [t, spec] of Object.entries(SPEC)) {
      it(`type 0x${Number(t).toString(16)} (${spec.name}): every reserved bit of the 256-bit descriptor alone is IQE with IQEI 4`, () => {
        const r = rig();
        const wrong: string[] = [];
        for (let word = 0; word < 4; word++) {
          for (let bit = 0; bit < 64; bit++) {
            if (defined(TYPE_BITS, word, bit) || defined(spec.fields, word, bit)) continue;
            const qw = zeros();
            qw[0] = [spec.base[0], spec.base[1]];
            const half = bit < 32 ? 0 : 1;
            qw[word]![half] = (qw[word]![half]! | (1 << (bit % 32))) >>> 0;
            const got = submitRaw(r, qw);
            if (got.iqe !== 1 || got.iqei !== 4 || !got.headStayed) wrong.push(`qw${word}[${bit}]: ${JSON.stringify(got)}`);
          }
        }
        assert.deepEqual(wrong, []);
      });
    }

    it('reserved granularities are reserved fields (IQEI 4): context-cache and IOTLB G=0, PASID-IOTLB G=0/1, PASID-cache G=2', () => {
      const r = rig();
      for (const [type, g] of [[0x1, 0], [0x2, 0], [0x6, 0], [0x6, 1], [0x7, 2]] as const) {
        const qw = zeros();
        qw[0] = [type | (g << 4), 0];
        assert.deepEqual(submitRaw(r, qw), { iqe: 1, iqei: 4, headStayed: true }, `type ${type} G=${g}`);
      }
    });

    // IQERCD.IQEI codes: Intel's IQERCD_REG register page (0 info not available, 1 invalid tail pointer, 2
    // descriptor fetch error, 3 invalid type, 4 reserved field, 5 invalid width) and VirtualBox's VTDIQEI enum
    // and IQT write handler (6 queue tail misaligned: IQT bit 4 with 256-bit descriptors; 7 invalid TTM).
    const queueError = (r: ReturnType<typeof rig>, write: () => void) => {
      r.machine.events.startRecording();
      write();
      const err = r.machine.events.recorded().find((e): e is Extract<HwEvent, { type: 'queue-error' }> => e.type === 'queue-error');
      return { error: err?.error, iqei: err?.iqei, fstsIqe: (r.unit.readRegister('FSTS').lo >>> 4) & 1, iqerIqei: r.unit.readRegister('IQER').lo & 0xf, head: r.unit.invalidationQueue.head };
    };

    it('a tail off the 256-bit boundary (IQT bit 4 with IQA.DW = 1) is IQE with IQEI 6 (queue tail misaligned); IQH does not move', () => {
      const r = rig();
      assert.deepEqual(queueError(r, () => r.unit.writeRegister('IQT', 16)), { error: 'IQE', iqei: 6, fstsIqe: 1, iqerIqei: 6, head: 0 });
    });

    it('a tail at or beyond the end of the queue is IQE with IQEI 1 (invalid tail pointer); IQT bits 3:0 are reserved and ignored', () => {
      const r = rig(); // IQA.QS = 0: one 4 KiB page, 128 descriptors of 256 bits
      assert.equal(r.unit.invalidationQueue.entries, 128);
      assert.deepEqual(queueError(r, () => r.unit.writeRegister('IQT', 128 * 32)), { error: 'IQE', iqei: 1, fstsIqe: 1, iqerIqei: 1, head: 0 });
      const ok = rig();
      const status = ok.machine.memory.allocPage();
      writeEntry(ok.machine.memory, ok.unit.invalidationQueue.base, encodeDescriptor(DescType.WAIT, { SW: 1, STATUS: 5, ADDR: status }));
      assert.deepEqual(queueError(ok, () => ok.unit.writeRegister('IQT', 32 + 0xf)), { error: undefined, iqei: undefined, fstsIqe: 0, iqerIqei: 0, head: 1 });
      assert.equal(ok.unit.readRegister('IQT').lo, 32, 'QT is bits 18:4');
      assert.equal(ok.machine.memory.read32(status), 5);
    });

    it('a descriptor the unit cannot read (the queue in a memory hole) is IQE with IQEI 2 (descriptor fetch error)', () => {
      const r = rig();
      const hole = 0x10_0000_0000;
      r.machine.memory.addHole(hole, 0x1000_0000);
      enableQueuedInvalidation(r.unit, hole);
      assert.deepEqual(queueError(r, () => r.unit.writeRegister('IQT', 32)), { error: 'IQE', iqei: 2, fstsIqe: 1, iqerIqei: 2, head: 0 });
    });

    it('a reserved RTADDR.TTM (10b) latched by SRTP is IQE with IQEI 7 (invalid TTM) at the first descriptor fetched', () => {
      const r = rig();
      r.unit.writeRegister('RTADDR', U64.fromNumber(r.rootTable + (2 << 10)));
      r.unit.writeRegister('GCMD', (r.unit.readRegister('GSTS').lo | (1 << 30)) >>> 0);
      const status = r.machine.memory.allocPage();
      writeEntry(r.machine.memory, r.unit.invalidationQueue.base, encodeDescriptor(DescType.WAIT, { SW: 1, STATUS: 5, ADDR: status }));
      assert.deepEqual(queueError(r, () => r.unit.writeRegister('IQT', 32)), { error: 'IQE', iqei: 7, fstsIqe: 1, iqerIqei: 7, head: 0 });
      assert.equal(r.machine.memory.read32(status), 0, 'the wait did not run');
    });

    it('128-bit descriptors in scalable mode are IQE with IQEI 5 (descriptor width); legacy mode takes them', () => {
      for (const scalable of [true, false]) {
        const r = rig({ scalable });
        const base = r.machine.memory.allocPage();
        // Queued invalidation off, then on again with IQA.DW = 0 (128-bit descriptors).
        r.unit.writeRegister('GCMD', (r.unit.readRegister('GSTS').lo & ~(1 << 26)) >>> 0);
        enableQueuedInvalidation(r.unit, base, 0, false);
        const status = r.machine.memory.allocPage();
        submitDescriptors(r.unit, [{ type: DescType.WAIT, fields: { SW: 1, STATUS: 9, ADDR: status } }]);
        const fsts = r.unit.readRegister('FSTS').lo;
        if (scalable) {
          assert.deepEqual([(fsts >>> 4) & 1, r.unit.readRegister('IQER').lo & 0xf, r.unit.invalidationQueue.head, r.machine.memory.read32(status)], [1, 5, 0, 0]);
        } else {
          assert.deepEqual([(fsts >>> 4) & 1, r.unit.invalidationQueue.head, r.machine.memory.read32(status)], [0, 1, 9]);
        }
      }
    });
  });

  describe('fault recording registers', () => {
    it('records faults in order, sets PFO when all registers are full, and reports the oldest in FRI', () => {
      const r = rig({ features: { faultRecordingRegisters: 2 } });
      device(r, '00:02.0');
      smContext(r, SID);
      pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pageTable(r, 'second-level').root });
      const t1 = r.unit.translate({ sid: SID, addr: 0x1000 });
      const t2 = r.unit.translate({ sid: SID, addr: 0x2000, write: true });
      const t3 = r.unit.translate({ sid: SID, addr: 0x3000 });
      assert.deepEqual([t1, t2, t3].map((t) => !t.ok && [t.recorded, t.frcdIndex]), [[true, 0], [true, 1], [false, undefined]]);
      const fsts = r.unit.readRegister('FSTS').lo;
      assert.equal(fsts & 3, 3, 'PFO | PPF');
      assert.equal((fsts >> 8) & 0xff, 0, 'FRI: the oldest pending record');
      const recs = r.unit.pendingFaults();
      assert.deepEqual(recs.map((x) => [x.index, x.address.toString(), x.write]), [[0, '0x1000', false], [1, '0x2000', true]]);
      // The raw register: FR in bits 39:32 of the upper qword, T (bit 62) = 1 for reads, F (bit 63).
      const { base } = r.unit.faultRecordingRegisters;
      const hi = r.unit.readRegister(base + 8);
      assert.equal(hi.hi & 0xff, 0x79);
      assert.equal(hi.hi >>> 30, 0b11, 'F = 1, T = 1 (read)');
      assert.equal(hi.lo & 0xffff, SID);
      // Software clears F in record 0 (write 1), then PFO: the next fault lands in record 0.
      r.unit.writeRegister(base + 8, new U64(0x8000_0000, 0));
      r.unit.writeRegister('FSTS', 1);
      assert.equal((r.unit.readRegister('FSTS').lo >> 8) & 0xff, 1, 'FRI moves to record 1');
      const t4 = r.unit.translate({ sid: SID, addr: 0x4000 });
      assert.ok(!t4.ok && t4.frcdIndex === 0);
      assert.equal(r.unit.readRegister('FSTS').lo & 1, 0, 'PFO stays clear');
    });

    it('raises a fault event interrupt only when FECTL is unmasked', () => {
      const r = rig();
      device(r, '00:02.0');
      smContext(r, SID);
      r.machine.events.startRecording();
      r.unit.translate({ sid: SID, addr: 0x1000 });
      assert.equal(r.machine.events.recorded().filter((e) => e.type === 'interrupt').length, 0, 'masked at reset');
      r.unit.writeRegister('FECTL', 0);
      r.unit.translate({ sid: SID, addr: 0x2000 });
      assert.equal(r.machine.events.recorded().filter((e) => e.type === 'interrupt').length, 1);
      assert.equal(r.unit.readRegister('FECTL').lo >>> 30, 1, 'IP');
    });
  });

  describe('page request queue', () => {
    /** A page request the device did send (narrowed to the IOMMU's answer). */
    const sent = (o: PageRequestOutcome) => {
      if (o.outcome === 'not-sent') assert.fail(o.reason);
      return o;
    };

    function prqRig(order = 0) {
      const r = rig();
      const ep = device(r, '00:02.0', { ats: {}, pri: {}, pasid: { width: 20 } });
      smContext(r, SID, { dte: true, pre: true });
      pasidEntry(r, SID, 3, { pgtt: 1, did: 4, flptptr: pageTable(r, 'first-level').root });
      enablePageRequests(r.unit, r.machine.memory.allocPage(), order);
      return { r, ep };
    }

    it('a failed ATS translation becomes a page request descriptor in the PRQ', () => {
      const { r, ep } = prqRig();
      r.machine.events.startRecording();
      const out = r.machine.dma('00:02.0', { pasid: 3, addr: 0x7f00_1234, write: true });
      assert.equal(out.path, 'ats-fill');
      assert.ok(!out.result.ok && out.result.reason === 0x71 && !out.result.recorded);
      assert.equal(out.pageRequest?.outcome, 'queued');
      assert.equal(r.unit.pageRequestQueue.tail, 1);
      assert.equal(r.unit.readRegister('PRS').lo & 1, 1, 'PRS.PPR');
      assert.deepEqual(readPrq(r, 0), { type: 1, rid: SID, pasid: 3, address: 0x7f00_1000, read: false, write: true, exec: false, priv: false, lastInGroup: true, prgIndex: out.pageRequest!.prgIndex });
      assert.equal(ep.pendingGroups.length, 1);
    });

    it('a Page Group Response completes the group; Response Failure stops PRI on the device', () => {
      const { r, ep } = prqRig();
      const a = sent(r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x1000, read: true, write: false, exec: false, priv: false, lastInGroup: false }));
      r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x2000, read: true, write: false, exec: false, priv: false, lastInGroup: true, prgIndex: a.prgIndex });
      assert.equal(ep.outstandingRequests, 2);
      r.machine.events.startRecording();
      submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: a.prgIndex, LPIG: 1, RC: 0 } }]);
      assert.equal(ep.outstandingRequests, 0);
      const resp = r.machine.events.recorded().find((e): e is Extract<HwEvent, { type: 'page-response' }> => e.type === 'page-response')!;
      assert.deepEqual([resp.sid, resp.pasid, resp.prgIndex, resp.codeName, resp.origin], [SID, 3, a.prgIndex, 'success', 'descriptor']);
      const b = sent(r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x3000, read: true, write: false, exec: false, priv: false, lastInGroup: true }));
      submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: b.prgIndex, LPIG: 1, RC: 0xf } }]);
      assert.equal(ep.issuesPageRequests, false);
      const c = r.machine.dma('00:02.0', { pasid: 3, addr: 0x5000 });
      assert.equal(c.pageRequest, undefined, 'a stopped PRI sends no more page requests');
    });

    it('PRI Status after a Response Failure: RF and UPRGI are RW1C; Stopped needs Enable clear and nothing outstanding, so the ignored groups hold it off until a Reset; Enable set again clears RF and UPRGI', () => {
      // PCIe Page Request Extended Capability: Status RF (bit 0) and UPRGI (bit 1) RW1C, Stopped (bit 8) RO and
      // defined while Enable is clear; Control Reset acts only with Enable clear (or cleared by the same write).
      const { r, ep } = prqRig();
      const req = { pasid: 3, read: true, write: false, exec: false, priv: false, lastInGroup: true };
      const respond = (prgIndex: number, code: number) =>
        submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: prgIndex, LPIG: 1, RC: code } }]);
      const a = sent(r.machine.pageRequest('00:02.0', { ...req, address: 0x1000 }));
      const b = sent(r.machine.pageRequest('00:02.0', { ...req, address: 0x2000 }));
      respond(0x1ff, 0);
      respond(a.prgIndex, 0xf);
      assert.equal(ep.priStatus, 0x0003, 'RF | UPRGI; Stopped is undefined while Enable is set');
      ep.clearPriStatus(0x0002);
      assert.equal(ep.priStatus, 0x0001, 'writing 1 to UPRGI clears it alone');
      ep.setPriControl(true, true);
      assert.deepEqual(ep.pendingGroups.map((g) => g.prgIndex), [b.prgIndex], 'Reset with Enable set does nothing');
      ep.setPriControl(false);
      assert.equal(ep.priStatus, 0x0001, 'Enable clear, but group b is outstanding (its response would be ignored): not Stopped');
      ep.setPriControl(false, true);
      assert.deepEqual([ep.priStatus, ep.outstandingRequests], [0x0101, 0], 'Reset drops the pending requests: Stopped; RF stays');
      ep.setPriControl(true);
      assert.deepEqual([ep.priStatus, ep.issuesPageRequests], [0, true], 'Enable from clear to set clears RF');
      assert.ok(r.machine.dma('00:02.0', { pasid: 3, addr: 0x5000 }).pageRequest, 'page requests leave the device again');
      ep.setPriControl(true);
      respond(0x1ff, 0);
      ep.setPriControl(true);
      assert.equal(ep.priStatus, 0x0002, 'Enable written while already set is no transition: UPRGI stays');
    });

    it('an unused Response Code (0010b-1110b) is processed as Response Failure; after it every PRG response is ignored; a response for no group sets UPRGI', () => {
      // PCIe PRG Response Message, Response Code: 0000b Success, 0001b Invalid Request, 1111b Response Failure;
      // "1110b:0010b Unused ... A Function receiving such a message shall process it as if the message contained
      // a Response Code of Response Failure", which disables PRI and makes the Function ignore later responses.
      for (const rc of [2, 7, 0xe]) {
        const { r, ep } = prqRig();
        const req = { pasid: 3, read: true, write: false, exec: false, priv: false, lastInGroup: true };
        const a = sent(r.machine.pageRequest('00:02.0', { ...req, address: 0x1000 }));
        const b = sent(r.machine.pageRequest('00:02.0', { ...req, address: 0x2000 }));
        const respond = (prgIndex: number, code: number) =>
          submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: prgIndex, LPIG: 1, RC: code } }]);
        respond(0x1ff, 0);
        assert.equal(ep.priUnexpectedPrgIndex, true, 'UPRGI: no group has index 0x1ff');
        assert.equal(ep.priResponseFailure, false);
        respond(a.prgIndex, rc);
        assert.equal(ep.priResponseFailure, true, `RC ${rc} is taken as Response Failure`);
        assert.deepEqual(ep.pendingGroups.map((g) => g.prgIndex), [b.prgIndex], 'the failed group is complete');
        respond(b.prgIndex, 0);
        assert.deepEqual(ep.pendingGroups.map((g) => g.prgIndex), [b.prgIndex], 'a Success after the failure is ignored');
        assert.equal(r.machine.dma('00:02.0', { pasid: 3, addr: 0x5000 }).pageRequest, undefined, 'PRI is disabled');
      }
    });

    it('a device sends no page request while PRI Control.Enable is clear, after a Response Failure, or with a PASID while PASID is disabled: not-sent, and the PRQ sees nothing', () => {
      // PCIe Page Request Extended Capability, Control Enable: when clear, "the Function is not permitted to
      // issue Page Requests"; Status RF: set, the Function stops issuing them; PASID Control Enable: when clear,
      // the Function may not send TLPs with a PASID prefix.
      const { r, ep } = prqRig();
      const req = { pasid: 3, address: 0x1000, read: true, write: false, exec: false, priv: false, lastInGroup: true };
      ep.setPriControl(false);
      assert.deepEqual(r.machine.pageRequest('00:02.0', req), { outcome: 'not-sent', reason: 'PRI is disabled on 0000:00:02.0 (PRI Control.Enable = 0): it cannot send page requests' });
      assert.deepEqual([r.unit.pageRequestQueue.tail, ep.outstandingRequests, r.unit.readRegister('PRS').lo & 1], [0, 0, 0], 'nothing reached the IOMMU, nothing is outstanding');
      ep.setPriControl(true);
      const a = sent(r.machine.pageRequest('00:02.0', req));
      submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: a.prgIndex, LPIG: 1, RC: 0xf } }]);
      assert.deepEqual(r.machine.pageRequest('00:02.0', req), { outcome: 'not-sent', reason: '0000:00:02.0 stopped sending page requests after a Response Failure (PRI Status.RF = 1)' });
      ep.setPriControl(false);
      ep.setPriControl(true);
      ep.pasidEnabled = false;
      assert.deepEqual(r.machine.pageRequest('00:02.0', req), { outcome: 'not-sent', reason: 'PASID is disabled on 0000:00:02.0 (PASID Control.Enable = 0): it cannot send a page request with a PASID' });
      assert.equal(sent(r.machine.pageRequest('00:02.0', { ...req, pasid: undefined })).outcome, 'queued', 'without a PASID prefix it may');
      const none = rig();
      device(none, '00:02.0', { ats: {}, pasid: { width: 20 } });
      assert.deepEqual(none.machine.pageRequest('00:02.0', req), { outcome: 'not-sent', reason: '0000:00:02.0 has no PRI capability: it cannot send page requests' });
    });

    it('a device with all 512 group indices of a PASID outstanding waits: not-sent', () => {
      const { r } = prqRig(3); // 1,024 descriptors: room for all 512
      const req = { pasid: 3, address: 0x1000, read: true, write: false, exec: false, priv: false, lastInGroup: false };
      for (let i = 0; i < 512; i++) sent(r.machine.pageRequest('00:02.0', req));
      assert.deepEqual(r.machine.pageRequest('00:02.0', req), { outcome: 'not-sent', reason: '0000:00:02.0 has all 512 page request group indices outstanding for PASID 3: it waits for a response' });
    });

    it('sets PRO when the queue is full and answers a last-in-group request with Success', () => {
      const { r, ep } = prqRig(0); // one page: 128 descriptors, 127 usable
      for (let i = 0; i < 127; i++) {
        const x = r.machine.pageRequest('00:02.0', { pasid: 3, address: i * 0x1000, read: true, write: false, exec: false, priv: false, lastInGroup: true });
        assert.equal(x.outcome, 'queued');
      }
      r.machine.events.startRecording();
      const over = r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x99000, read: true, write: false, exec: false, priv: false, lastInGroup: true });
      assert.equal(over.outcome, 'overflow');
      assert.equal(r.unit.readRegister('PRS').lo & 2, 2, 'PRS.PRO');
      const resp = r.machine.events.recorded().find((e) => e.type === 'page-response');
      assert.ok(resp && resp.type === 'page-response' && resp.origin === 'hardware-overflow' && resp.codeName === 'success');
      assert.equal(ep.outstandingRequests, 127, 'the overflowed group is no longer outstanding');
      // Software drains: head = tail, clears PRO; requests queue again.
      r.unit.writeRegister(Reg.PQH, r.unit.readRegister('PQT'));
      r.unit.writeRegister('PRS', 2);
      assert.equal(r.unit.readRegister('PRS').lo & 2, 0);
      assert.equal(r.machine.pageRequest('00:02.0', { pasid: 3, address: 0, read: true, write: false, exec: false, priv: false, lastInGroup: true }).outcome, 'queued');
    });
  });
});
