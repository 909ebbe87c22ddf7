import * as assert from 'node:assert/strict';
import { PasidAllocator, type PasidCapable } from '../../src/core/driver/pasid-alloc';
import { CpuPasidTable, enqcmdGpFixup, submitEnqcmd } from '../../src/core/vmm/cpu-pasid';
import { PasidMap } from '../../src/core/vmm/pasid-map';
import { PasidSplit } from '../../src/core/vmm/pasid-split';
import { PasidTrace } from '../../src/core/vmm/pasid-trace';
import { throwsErrno } from '../support/kernel-platform';

const dsa0: PasidCapable = { name: 'dsa0', maxPasids: 2 ** 20 };
const portal = { device: 'dsa0' };
/** IA32_PASID as reference §7.3 lays it out: bit 31 valid, bits 19:0 the PASID. */
const msr = (pasid: number, valid = true) => (valid ? 2 ** 31 : 0) + pasid;

describe('vmm: the CPU PASID translation table and guest ENQCMD', () => {
  it('translates the guest IA32_PASID to the host PASID the device receives', () => {
    const cpu = new CpuPasidTable('vm0');
    cpu.map(5, 1030);
    assert.deepEqual(submitEnqcmd(cpu, msr(5), portal), { hostPasid: 1030, guestPasid: 5, translated: true, portal: 'dsa0' });
    assert.deepEqual(cpu.trace.all, [{ side: 'cpu', direction: 'G-to-H', kind: 'fast', vm: 'vm0', from: 5, to: 1030, device: 'dsa0', why: 'ENQCMD' }]);
  });

  it('raises #GP when IA32_PASID is not valid, and the lazy fixup makes the retry work', () => {
    const cpu = new CpuPasidTable('vm0');
    cpu.map(5, 1030);
    const first = submitEnqcmd(cpu, msr(5, false), portal);
    assert.ok('fault' in first && first.fault === '#GP', JSON.stringify(first));
    assert.equal(cpu.trace.all.length, 0, 'the #GP comes before any translation');
    assert.equal(enqcmdGpFixup(undefined), undefined, 'a task without a PASID keeps its #GP');
    const loaded = enqcmdGpFixup(5)!;
    assert.equal(loaded, msr(5));
    assert.deepEqual(submitEnqcmd(cpu, loaded, portal), { hostPasid: 1030, guestPasid: 5, translated: true, portal: 'dsa0' });
  });

  it('exits to the VMM on a miss; the VMM maps the PASID and the guest resumes', () => {
    const cpu = new CpuPasidTable('vm0');
    assert.deepEqual(submitEnqcmd(cpu, msr(7), portal), {
      fault: 'vm-exit',
      reason: 'ENQCMD to dsa0: guest PASID 7 has no PASID translation entry',
      guestPasid: 7,
    });
    cpu.map(7, 1031);
    assert.equal((submitEnqcmd(cpu, msr(7), portal) as { hostPasid: number }).hostPasid, 1031);
  });

  it('without PASID translation, sends the guest PASID as is (identity, as upstream KVM runs)', () => {
    const cpu = new CpuPasidTable('vm0', { translation: false });
    assert.deepEqual(submitEnqcmd(cpu, msr(9), portal), { hostPasid: 9, guestPasid: 9, translated: false, portal: 'dsa0' });
  });

  it('keeps the table a bijection and empty after unmapping everything', () => {
    const cpu = new CpuPasidTable('vm0');
    cpu.map(1, 1024);
    cpu.map(1, 1024);
    throwsErrno(() => cpu.map(1, 1025), 'EBUSY');
    throwsErrno(() => cpu.map(2, 1024), 'EBUSY');
    throwsErrno(() => cpu.map(2 ** 20, 1), 'ERANGE');
    assert.equal(cpu.holds(1024), true);
    assert.deepEqual(cpu.leftovers().map((f) => f.message), ['vm0: the CPU PASID translation table still maps guest PASID 1 to host PASID 1024']);
    cpu.unmap(1);
    throwsErrno(() => cpu.unmap(1), 'ENOENT');
    assert.equal(cpu.holds(1024), false);
    assert.deepEqual(cpu.leftovers(), []);
  });

  it('sends what the VMM allocated: ALLOC_PASID, KVM map, ENQCMD, in one trace', () => {
    const trace = new PasidTrace();
    const map = new PasidMap({ vm: 'vm0', policy: 'non-identity', allocator: new PasidAllocator(), devices: [dsa0], split: new PasidSplit(1024), trace });
    const cpu = new CpuPasidTable('vm0', { trace });
    map.addHolder(cpu);
    const { guest, host } = map.allocGuest();
    map.map(guest, { name: 'kvm' });
    cpu.map(guest, map.vmmGuestToHost(guest, 'KVM PASID translation map')!);
    const sent = submitEnqcmd(cpu, msr(guest), portal);
    assert.deepEqual(sent, { hostPasid: host, guestPasid: 1, translated: true, portal: 'dsa0' });
    assert.deepEqual(trace.all.map((t) => `${t.side} ${t.direction} ${t.kind}`), ['vmm G-to-H fast', 'cpu G-to-H fast']);
    // Teardown in the right order leaves nothing and reports nothing.
    cpu.unmap(guest);
    map.unmap(guest, 'kvm');
    map.freeGuest(guest);
    assert.deepEqual([...map.findings, ...map.leftovers(), ...cpu.leftovers()], []);
  });
});
