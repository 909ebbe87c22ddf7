import * as assert from 'node:assert/strict';
import type { HwEvent } from '../../src/core/hw/events';
import { U64 } from '../../src/core/u64';
import { decodePageRequest, DescType, encodeDescriptor } from '../../src/core/vtd/descriptors';
import { Reg } from '../../src/core/vtd/registers';
import { enablePageRequests, submitDescriptors, writeEntry } from '../../src/core/vtd/tables';
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
      assert.equal(r.unit.readRegister('IQER').hi >>> 16, SID, 'IQER.ITESID');
      assert.equal(r.machine.memory.read32(status), 0, 'the pending wait is aborted');
      ep.invalidationTimeout = false;
      r.unit.writeRegister('FSTS', 1 << 6);
      assert.equal(r.machine.memory.read32(status), 1, 'clearing ITE lets the queue go on');
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
      const a = r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x1000, read: true, write: false, exec: false, priv: false, lastInGroup: false });
      r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x2000, read: true, write: false, exec: false, priv: false, lastInGroup: true, prgIndex: a.prgIndex });
      assert.equal(ep.outstandingRequests, 2);
      r.machine.events.startRecording();
      submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: a.prgIndex, LPIG: 1, RC: 0 } }]);
      assert.equal(ep.outstandingRequests, 0);
      const resp = r.machine.events.recorded().find((e): e is Extract<HwEvent, { type: 'page-response' }> => e.type === 'page-response')!;
      assert.deepEqual([resp.sid, resp.pasid, resp.prgIndex, resp.codeName, resp.origin], [SID, 3, a.prgIndex, 'success', 'descriptor']);
      const b = r.machine.pageRequest('00:02.0', { pasid: 3, address: 0x3000, read: true, write: false, exec: false, priv: false, lastInGroup: true });
      submitDescriptors(r.unit, [{ type: DescType.PAGE_GROUP_RESPONSE, fields: { PP: 1, RID: SID, PASID: 3, PRGI: b.prgIndex, LPIG: 1, RC: 0xf } }]);
      assert.equal(ep.priStopped, true);
      const c = r.machine.dma('00:02.0', { pasid: 3, addr: 0x5000 });
      assert.equal(c.pageRequest, undefined, 'a stopped PRI sends no more page requests');
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
