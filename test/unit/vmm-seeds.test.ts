import * as assert from 'node:assert/strict';
import { Vm } from '../../src/core/vmm/vm';
import { vmHost } from '../support/vm-platform';
import { ATS_PRI_PASID } from '../support/kernel-platform';

const lookups = (vm: Vm) => vm.log.steps.filter((s) => s.lookup).map((s) => `${s.lookup!.side} ${s.lookup!.direction} ${s.lookup!.kind}${s.lookup!.requester ? ` for ${s.lookup!.requester}` : ''}`);

describe('seed 000: guest and host PASIDs, non-identity, through a mediated device', () => {
  const setup = () => {
    const host = vmHost();
    // The host already uses global PASID 1 (its own SVA process) and the parent driver marks the mdev with
    // PASID 2 of 6a:01.0's own space, which no global PASID may coincide with: the VM's first host PASID is 3.
    const hostApp = host.kernel.newProcess('host-app');
    host.kernel.svaBind('6b:00.0', hostApp);
    const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true, virtualCommand: true }, kernel: { version: '6.1' }, pasids: { policy: 'non-identity' } });
    vm.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID });
    vm.boot();
    const app = vm.kernel.newProcess('app');
    app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
    app.touch(0x7f00_0000_2000, true);
    return { host, vm, app };
  };

  it('steps 1-7: sva_bind_mm, vcmd allocation, PASID entry and its flush, bind_gpasid, the work queue through the device model', () => {
    const { host, vm, app } = setup();
    assert.ok(vm.kernel.log.lines.some((l) => l.text === 'DMAR: Register custom PASID allocator'), '6.1 registers the virtual command allocator');
    const sva = vm.kernel.svaBind('00:04.0', app); // 1
    const alloc = vm.log.steps.find((s) => s.action === 'virtual-command')!; // 2
    assert.match(alloc.detail, /^ALLOC_PASID: status 0, guest PASID 1 \(host PASID 3 allocated behind it\)$/);
    assert.equal(sva.pasid, 1);
    const bind = vm.vmm!.bindOf('00:04.0', 1)!; // 3-5
    assert.equal(bind.hostPasid, 3);
    assert.equal(host.kernel.device('6a:01.0').pasidDomains.get(3), bind.domain, 'the host bound the guest table at the parent RID with the host PASID');
    const wire = vm.programWorkQueue('00:04.0', 0, sva.pasid); // 6-7
    assert.equal(wire, 3);
    const r = vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_2010, write: true });
    assert.equal(r.wirePasid, 3);
    assert.ok(r.result.ok, JSON.stringify(r.result));
    assert.equal(r.gpa, app.pageTable.lookup(0x7f00_0000_2000)!.output + 0x10);
    assert.deepEqual(lookups(vm), ['vmm G-to-H fast', 'host-driver G-to-H reverse for vdcm']);
    assert.deepEqual(vm.findings, []);
  });

  it('PRQ and response: host PASID in, guest PASID found from the bind (fast), guest answers, G-to-H (fast) out', () => {
    const { vm, app } = setup();
    const sva = vm.kernel.svaBind('00:04.0', app);
    vm.programWorkQueue('00:04.0', 0, sva.pasid);
    const before = vm.log.last;
    assert.equal(vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_9000, write: true }).result.ok, false);
    const during = vm.log.since(before);
    const inject = during.find((s) => s.action === 'inject-page-request')!;
    assert.deepEqual(inject.pasid, { guest: 1, host: 3 });
    assert.deepEqual(during.filter((s) => s.lookup).map((s) => `${s.lookup!.side} ${s.lookup!.direction} ${s.lookup!.kind}`), ['host-driver H-to-G fast', 'vmm G-to-H fast']);
    assert.ok(during.some((s) => s.action === 'page-response' && s.side === 'host-driver' && /PASID 3 PRG \d+: success/.test(s.detail)));
    assert.ok(vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_9000, write: true }).result.ok);
  });

  it('invariants: a work queue programmed before any bind is reported, not crashed on; nothing is left after unbind', () => {
    const { vm, app } = setup();
    assert.equal(vm.programWorkQueue('00:04.0', 1, 7), undefined);
    assert.equal(vm.findings[0]!.code, 'present-without-mapping');
    const sva = vm.kernel.svaBind('00:04.0', app);
    vm.kernel.svaUnbind(sva);
    assert.equal(vm.vmm!.bindOf('00:04.0', 1), undefined);
    // The mm keeps its PASID until it exits; then the guest gives it back with FREE_PASID.
    app.exit();
    assert.ok(vm.log.steps.some((s) => s.action === 'virtual-command' && /^FREE_PASID: status 0, guest PASID 1$/.test(s.detail)), vm.log.steps.map((s) => s.detail).join('\n'));
    assert.deepEqual(vm.leftovers(), []);
  });
});

describe('seed 003: ENQCMD and the local/global PASID split', () => {
  const setup = () => {
    const host = vmHost();
    const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity', globalMin: 1024 } });
    vm.assign('6a:01.0', '00:03.0', undefined, { enqcmd: true });
    vm.assign('6b:00.0', '00:04.0');
    vm.boot();
    const app = vm.kernel.newProcess('app');
    app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
    app.touch(0x7f00_0000_1000, true);
    return { host, vm, app };
  };

  it('the vIOMMU confines the guest to the local range; its PASID gets one global host PASID on every device', () => {
    const { host, vm, app } = setup();
    // 1024 = 2^10: ECAP.PSS 9, so the guest's devices have 1024 PASIDs ([1, 1023] usable).
    assert.equal(vm.viommu!.ecap.pss, 9);
    const a = vm.kernel.svaBind('00:03.0', app);
    const b = vm.kernel.svaBind('00:04.0', app);
    assert.equal(a.pasid, b.pasid, 'one mm, one PASID on both devices');
    assert.ok(a.pasid >= 1 && a.pasid < 1024);
    const h = vm.vmm!.bindOf('00:03.0', a.pasid)!.hostPasid;
    assert.ok(h >= 1024, `host PASID ${h} is global`);
    assert.equal(vm.vmm!.bindOf('00:04.0', b.pasid)!.hostPasid, h);
    // The ENQCMD device has only the global entry; the other one has the local entry too.
    assert.equal(host.kernel.device('6a:01.0').pasidDomains.has(a.pasid), false);
    assert.equal(host.kernel.device('6a:01.0').pasidDomains.has(h), true);
    assert.equal(host.kernel.device('6b:00.0').pasidDomains.has(a.pasid), true);
    assert.equal(host.kernel.device('6b:00.0').pasidDomains.has(h), true);
    assert.deepEqual(vm.pasids.entries().find((e) => e.guest === a.pasid)!.users.map((u) => u.name).sort(), ['0000:6a:01.0', '0000:6b:00.0']);
  });

  it('ENQCMD: the CPU translates IA32_PASID to the host PASID; the device\'s DMA uses it; a missing entry exits, an invalid MSR #GPs', () => {
    const { vm, app } = setup();
    const other = vm.kernel.newProcess('other');
    assert.equal('fault' in vm.enqcmd(other, '00:03.0', { addr: 0x7f00_0000_1000 }) && vm.enqcmd(other, '00:03.0', { addr: 0x7f00_0000_1000 }).fault, '#GP', 'no SVA PASID: IA32_PASID not valid');
    const sva = vm.kernel.svaBind('00:04.0', app); // bound on the device without ENQCMD only: KVM has no entry
    const miss = vm.enqcmd(app, '00:03.0', { addr: 0x7f00_0000_1000 });
    assert.ok('fault' in miss && miss.fault === 'vm-exit');
    vm.kernel.svaBind('00:03.0', app);
    const r = vm.enqcmd(app, '00:03.0', { addr: 0x7f00_0000_1008, write: true });
    assert.ok(!('fault' in r), JSON.stringify(r));
    assert.equal(r.guestPasid, sva.pasid);
    assert.ok(r.hostPasid >= 1024);
    assert.ok(r.dma!.result.ok, JSON.stringify(r.dma!.result));
    assert.equal(r.dma!.gpa, app.pageTable.lookup(0x7f00_0000_1000)!.output + 8);
    // The device without ENQCMD that the guest programs with its own (local) PASID also translates.
    assert.ok(vm.dma('00:04.0', { pasid: sva.pasid, addr: 0x7f00_0000_1008 }).result.ok);
  });
});
