import * as assert from 'node:assert/strict';
import { Machine } from '../../src/core/hw/machine';
import { U64 } from '../../src/core/u64';
import { capabilitiesOf } from '../../src/core/vtd/cap';
import { DescType } from '../../src/core/vtd/descriptors';
import { vtdUnits } from '../../src/core/vtd/factory';
import { Reg } from '../../src/core/vtd/registers';
import { submitDescriptors } from '../../src/core/vtd/tables';
import type { VtdDescriptorEvent, VtdRegisterWrite } from '../../src/core/vtd/traps';
import { device, pageTable, pasidEntry, rig, smContext } from '../support/vtd';

const SID = 0x0010;

/** A scalable-mode unit with one second-level PASID entry (DID 1) and its IOTLB holding 0x1000's translation. */
function cachedTranslation() {
  const r = rig();
  device(r, '00:02.0');
  smContext(r, SID);
  const pt = pageTable(r, 'second-level');
  pt.map(0x1000, 0x8000_0000, 0x1000, { read: true, write: true });
  pasidEntry(r, SID, 0, { pgtt: 2, did: 1, aw: 2, slptptr: pt.root });
  const first = r.unit.translate({ sid: SID, addr: 0x1000 });
  assert.ok(first.ok && first.source === 'walk');
  return r;
}

describe('core: VT-d traps (the VMM hooks)', () => {
  it('a register write the trapper handles has no effect; one it passes takes effect before registerWritten sees it', () => {
    const r = rig();
    // FECTL.IM (bit 31) is set at reset: fault interrupts stay masked until software clears it.
    assert.equal(r.unit.readRegister('FECTL').lo, 0x8000_0000);
    const seen: VtdRegisterWrite[] = [];
    const after: number[] = [];
    const detach = r.unit.trap({
      registerWrite: (w) => (seen.push(w), w.name === 'FECTL' ? 'handled' : 'pass'),
      registerWritten: (w) => after.push(r.unit.readRegister(w.offset).lo),
    });
    r.unit.writeRegister('FECTL', 0);
    assert.equal(r.unit.readRegister('FECTL').lo, 0x8000_0000, 'the trapper emulated the write: the unit did nothing');
    assert.deepEqual(after, [], 'registerWritten is for writes the unit handled');
    r.unit.writeRegister('PECTL', 0);
    assert.equal(r.unit.readRegister('PECTL').lo, 0);
    assert.deepEqual(after, [0], 'observed after the write took effect');
    assert.deepEqual(
      seen.map((w) => [w.name, w.offset, w.width, w.value.toString()]),
      [
        ['FECTL', 0x38, 32, '0x0'],
        ['PECTL', 0xe0, 32, '0x0'],
      ],
    );
    detach();
    r.unit.writeRegister('FECTL', 0);
    assert.equal(r.unit.readRegister('FECTL').lo, 0, 'detached: the write takes effect again');
    assert.equal(seen.length, 2);
  });

  it('one trapper at a time; detach restores normal behaviour and a second trap is then allowed', () => {
    const r = rig();
    const detach = r.unit.trap({});
    assert.throws(() => r.unit.trap({}), /dmar0 is already trapped/);
    detach();
    const again = r.unit.trap({});
    again();
  });

  it('the virtual command registers are the trapper\'s: it answers VCMD through VCRSP with setRegisterValue', () => {
    // ECAP.VCS is bit 44. Linux (5.10-6.2 vcmd_alloc_pasid) writes VCMD_CMD_ALLOC (1) to VCMD at 0xe00, polls
    // VCRSP at 0xe10 until IP (bit 0) clears, then reads SC ((v & 0xff) >> 1, 0 = success) and the PASID (bits 35:16).
    const built = capabilitiesOf({});
    const m = new Machine();
    const unit = m.addUnit(vtdUnits, { name: 'dmar0', ecap: built.ecap.or(new U64(1 << 12, 0)) });
    assert.equal(unit.ecap.vcs, 1);
    const detach = unit.trap({
      registerWrite: (w) => {
        if (w.name !== 'VCMD') return 'pass';
        if (w.value.lo === 1) unit.setRegisterValue(0xe10, new U64(0, 5 << 16)); // PASID 5, SC 0, IP 0
        return 'handled';
      },
    });
    unit.writeRegister(0xe00, 1);
    const rsp = unit.readRegister(0xe10);
    assert.equal(rsp.lo & 1, 0, 'IP clear: the command completed');
    assert.equal((rsp.lo & 0xff) >> 1, 0, 'SC success');
    assert.equal((rsp.lo >>> 16) & 0xf_ffff, 5);
    assert.equal(unit.readRegister(0xe00).lo, 0, 'the handled write never reached the register');
    detach();
    // Without a trapper an unimplemented offset is plain storage, as before.
    unit.writeRegister(0xe00, 1);
    assert.equal(unit.readRegister(0xe00).lo, 1);
  });

  it('a descriptor the trapper handles is not executed (the IOTLB entry stays) but the queue head advances', () => {
    const r = cachedTranslation();
    const fetched: VtdDescriptorEvent[] = [];
    const done: VtdDescriptorEvent[] = [];
    const detach = r.unit.trap({ descriptor: (d) => (fetched.push(d), 'handled'), descriptorDone: (d) => done.push(d) });
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 2, DID: 1 } }]);
    const q = r.unit.invalidationQueue;
    assert.equal(q.head, q.tail, 'IQH moved past the handled descriptor');
    const still = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(still.ok && still.source === 'iotlb', 'not executed: the domain-selective IOTLB invalidation dropped nothing');
    assert.equal(fetched.length, 1);
    assert.deepEqual(done, [], 'descriptorDone is for descriptors the unit executed');
    // The IOTLB Invalidate Descriptor (type 2): G at bits 5:4 (2 = domain-selective), DID at 31:16.
    assert.equal(fetched[0]!.type, DescType.IOTLB);
    assert.equal(fetched[0]!.typeName, 'IOTLB Invalidation');
    assert.equal(fetched[0]!.qwords.length, 4, 'a scalable-mode queue has 256-bit descriptors');
    assert.equal(fetched[0]!.qwords[0]!.toString(), '0x10022');
    detach();
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 2, DID: 1 } }]);
    const fresh = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(fresh.ok && fresh.source === 'walk', 'detached: the invalidation is executed again');
  });

  it('descriptorDone sees the fields of a descriptor the unit executed, after its own caches were invalidated', () => {
    const r = cachedTranslation();
    const done: { d: VtdDescriptorEvent; iotlb: number }[] = [];
    r.unit.trap({ descriptor: () => 'pass', descriptorDone: (d) => done.push({ d, iotlb: r.unit.cacheSizes().iotlb }) });
    submitDescriptors(r.unit, [{ type: DescType.IOTLB, fields: { G: 3, DID: 1, ADDR: 0x1000, AM: 0, IH: 0 } }]);
    assert.equal(done.length, 1);
    assert.equal(done[0]!.iotlb, 0, 'the page-selective invalidation had already dropped the entry');
    assert.deepEqual(
      { G: done[0]!.d.fields.G, DID: done[0]!.d.fields.DID, ADDR: done[0]!.d.fields.ADDR, AM: done[0]!.d.fields.AM, IH: done[0]!.d.fields.IH },
      { G: 3, DID: 1, ADDR: 1, AM: 0, IH: 0 },
    );
    const fresh = r.unit.translate({ sid: SID, addr: 0x1000 });
    assert.ok(fresh.ok && fresh.source === 'walk');
  });

  it('a handled wait descriptor writes no status: the trapper completes it', () => {
    const r = rig();
    const status = r.machine.memory.allocPage();
    r.unit.trap({ descriptor: (d) => (d.type === DescType.WAIT ? 'handled' : 'pass') });
    submitDescriptors(r.unit, [{ type: DescType.WAIT, fields: { SW: 1, STATUS: 1, ADDR: status } }]);
    assert.equal(r.machine.memory.readLo(status), 0);
    assert.equal(r.unit.readRegister(Reg.IQH).lo, r.unit.readRegister(Reg.IQT).lo);
  });
});
