import * as assert from 'node:assert/strict';
import { Vm, VmError } from '../../src/core/vmm/vm';
import { vmHost } from '../support/vm-platform';

describe('VMs: guest memory, the vIOMMU and device assignment', () => {
  it('a guest kernel boots on its vIOMMU and keeps its tables in guest memory, which are host pages', () => {
    const host = vmHost();
    const vm = new Vm(host, { name: 'vm1', memory: 0x4000_0000, viommu: { cachingMode: true } });
    vm.assign('6b:00.0', '00:03.0');
    vm.boot();
    // QEMU's vIOMMU as the guest's boot line shows it: register base fed90000, version 1.0.
    assert.ok(vm.kernel.log.lines.some((l) => /^DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap [0-9a-f]+ ecap [0-9a-f]+$/.test(l.text)));
    const root = vm.viommu!.rootTableAddress;
    assert.ok(root > 0 && root < vm.memory.size, `root table 0x${root.toString(16)} is a guest-physical address`);
    // The guest's root entry for bus 0, read by the guest at its GPA and by the host at the HPA behind it.
    const hpa = vm.memory.hostBase + root;
    assert.equal(host.machine.memory.readLo(hpa), vm.memory.readLo(root));
    assert.notEqual(vm.memory.readLo(root) & 1, 0, 'the guest made the root entry of bus 0 present');
    const guestDev = vm.kernel.device('00:03.0');
    assert.equal(guestDev.ridDomain?.type, 'paging');
  });

  it('refuses device assignment under a vIOMMU without caching mode, with QEMU 7.2\'s words', () => {
    const vm = new Vm(vmHost(), { name: 'vm1', viommu: { cachingMode: false } });
    assert.throws(() => vm.assign('6b:00.0', '00:03.0'), (e: unknown) => e instanceof VmError && e.message === 'We need to set caching-mode=on for intel-iommu to enable device assignment with IOMMU protection.');
  });

  it('without a vIOMMU an assigned device DMAs to guest-physical addresses: GPA 0x1234000 is host RAM at the VM\'s base', () => {
    const host = vmHost();
    const vm = new Vm(host, { name: 'vm1', memory: 0x4000_0000 });
    vm.assign('6b:00.0', '00:03.0');
    const r = vm.dma('00:03.0', { addr: 0x123_4567, write: true });
    assert.ok(r.result.ok);
    assert.equal(r.result.address, vm.memory.hostBase + 0x123_4567);
    assert.equal(r.gpa, 0x123_4567);
    // Beyond guest RAM there is nothing mapped: the host IOMMU faults.
    assert.equal(vm.dma('00:03.0', { addr: 0x4000_0000 }).result.ok, false);
  });
});

describe('caching mode: the VMM traps the guest\'s invalidations and shadows its second-level tables', () => {
  const setup = () => {
    const host = vmHost();
    // No first-level support advertised: the guest's DMA domains are second-level, which the VMM must shadow.
    const vm = new Vm(host, { name: 'vm1', memory: 0x4000_0000, viommu: { cachingMode: true, firstLevel: false } });
    vm.assign('6b:00.0', '00:03.0');
    vm.boot();
    return { host, vm, dom: vm.kernel.device('00:03.0').ridDomain! };
  };

  it('a guest map is trapped (the guest flushes under CM) and replayed as a host map: DMA reaches the guest page', () => {
    const { vm, dom } = setup();
    assert.equal(dom.stage, 'second');
    assert.equal(vm.device('00:03.0').space.kind, 'shadow');
    vm.kernel.map(dom, 0x10000, 0x20_0000, 0x1000, { read: true, write: true });
    const r = vm.dma('00:03.0', { addr: 0x10010, write: true });
    assert.ok(r.result.ok, JSON.stringify(r.result));
    assert.equal(r.result.address, vm.memory.hostBase + 0x20_0010);
    assert.equal(r.gpa, 0x20_0010);
    assert.ok(vm.log.steps.some((s) => s.action === 'replay' && /1 mapped/.test(s.detail)));
  });

  it('a guest unmap is replayed as a host unmap: the device faults on the host afterwards', () => {
    const { vm, dom } = setup();
    vm.kernel.map(dom, 0x10000, 0x20_0000, 0x2000, { read: true, write: false });
    assert.equal(vm.dma('00:03.0', { addr: 0x11000 }).result.ok, true);
    assert.equal(vm.dma('00:03.0', { addr: 0x11000, write: true }).result.ok, false, 'read-only in the guest, read-only on the host');
    vm.kernel.unmap(dom, 0x10000, 0x2000);
    assert.equal(vm.dma('00:03.0', { addr: 0x11000 }).result.ok, false);
    assert.equal(vm.vmm!.shadowOf('00:03.0')!.size, 0);
  });

  it('an invalidation the guest skips leaves the host without the mapping (the bug class caching mode exposes)', () => {
    const { vm, dom } = setup();
    vm.kernel.map(dom, 0x10000, 0x20_0000, 0x1000, { read: true, write: true }, { skipInvalidation: true });
    assert.equal(vm.dma('00:03.0', { addr: 0x10000 }).result.ok, false, 'the VMM never heard of the mapping');
  });
});
