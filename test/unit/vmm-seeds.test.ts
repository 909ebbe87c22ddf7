import * as assert from 'node:assert/strict';
import type { DeviceInfo } from '../../src/core/driver/device';
import { Descs } from '../../src/core/driver/qi';
import { writePasidEntry } from '../../src/core/vtd/tables';
import { migrate } from '../../src/core/vmm/migration';
import { Vm, VmError } from '../../src/core/vmm/vm';
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
    const gp = vm.enqcmd(other, '00:03.0', { addr: 0x7f00_0000_1000 });
    assert.ok('fault' in gp && gp.fault === '#GP', 'no SVA PASID: IA32_PASID not valid');
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

describe('seed 004: a mediated device with a vIOMMU', () => {
  const setup = (mdevKeepsGpaView = false) => {
    const host = vmHost();
    const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: false }, vmm: { mdevKeepsGpaView } });
    vm.addMdev('6a:01.0', '00:05.0', { caps: { pasid: { width: 20 } } });
    vm.boot();
    return { host, vm, dom: vm.kernel.device('00:05.0').ridDomain! };
  };

  it('the guest uses IOVA: the device model resolves addresses in guest device structures through the vIOMMU\'s IOVA mappings', () => {
    const { vm, dom } = setup();
    assert.equal(vm.device('00:05.0').space.kind, 'shadow');
    vm.kernel.map(dom, 0x80_0000, 0x30_0000, 0x1000, { read: true, write: true });
    // A guest GPU page-table entry holding IOVA 0x800040: the device model needs IOVA to HPA, not GPA to HPA.
    assert.equal(vm.deviceModelTranslate('00:05.0', 0x80_0040), vm.memory.hostBase + 0x30_0040);
    assert.notEqual(vm.deviceModelTranslate('00:05.0', 0x80_0040), vm.memory.hpa(0x80_0040));
    // The subdevice's own DMA (parent RID + its PASID) goes through the same shadow.
    const r = vm.dma('00:05.0', { addr: 0x80_0040 });
    assert.equal(r.wirePasid, vm.device('00:05.0').hostPasid);
    assert.equal(r.gpa, 0x30_0040);
    assert.deepEqual(vm.device('00:05.0').deviceModelView, { gpa: false, iova: true });
    assert.deepEqual(vm.findings, []);
  });

  it('a device model still fed guest-RAM mappings when IOVA mappings arrive is reported (one device, both spaces)', () => {
    const { vm } = setup(true);
    assert.deepEqual(vm.findings.map((f) => f.code), ['mixed-address-spaces']);
  });
});

describe('seed 001: RID and RID+PASID domains under a VM (the second drawing, with guest SVA)', () => {
  it('RID1 default IOVA domain, RID1+PASID-x in vm1\'s GPA domain, guest SVA PASIDs nested under that parent', () => {
    const host = vmHost();
    const vm1 = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity' } });
    // vm2's guest programs RID2 itself with its own PASID: a local/global split gives RID2 an entry at the
    // guest's PASID beside the global one (seed 003), while RID1's mdev PASIDs stay host-allocated.
    const vm2 = new Vm(host, { name: 'vm2', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity', globalMin: 1024 } });
    const wq2 = vm1.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID }); // WQ2 (PASID-x) to VM1
    const wq3 = vm2.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID }); // WQ3 (PASID-y) to VM2
    vm2.assign('6b:00.0', '00:05.0'); // RID2 to VM2
    vm1.boot();
    vm2.boot();
    const rid1 = host.kernel.device('6a:01.0');
    assert.equal(rid1.ridDomain?.type, 'paging', 'RID1 keeps its default (IOVA) domain for WQ1');
    // Each guest's own DMA domain is first level (the vIOMMU has it), so each attachment is the VM's GPA
    // domain itself or a nested domain over it: in the drawing, the entries under domain2 and domain3.
    const under = (d: { parent?: unknown } | undefined, gpa: unknown) => d === gpa || d?.parent === gpa;
    assert.ok(under(rid1.pasidDomains.get(wq2.hostPasid!), vm1.gpaDomain), '[RID1, PASID-x] under vm1');
    assert.ok(under(rid1.pasidDomains.get(wq3.hostPasid!), vm2.gpaDomain), '[RID1, PASID-y] under vm2');
    assert.ok(under(host.kernel.device('6b:00.0').ridDomain, vm2.gpaDomain), '[RID2] under vm2');
    // Guest SVA in both VMs: nested domains whose parent is the VM's GPA domain, at new PASIDs of RID1 / RID2.
    const p1 = vm1.kernel.newProcess('process1');
    const p2 = vm2.kernel.newProcess('process2');
    const a = vm1.kernel.svaBind('00:04.0', p1);
    const d = vm2.kernel.svaBind('00:05.0', p2);
    const na = vm1.vmm!.bindOf('00:04.0', a.pasid)!;
    const nd = vm2.vmm!.bindOf('00:05.0', d.pasid)!;
    assert.equal(na.domain.parent, vm1.gpaDomain);
    assert.equal(nd.domain.parent, vm2.gpaDomain);
    assert.equal(rid1.pasidDomains.get(na.hostPasid), na.domain);
    assert.equal(host.kernel.device('6b:00.0').pasidDomains.get(nd.hostPasid), nd.domain);
    // Both VMs chose guest PASID 1; the host keeps them apart.
    assert.equal(a.pasid, d.pasid);
    assert.notEqual(na.hostPasid, nd.hostPasid);
    // [RID2, PASID-a]: vm2's own PASID value is on RID2 too (the local entry), so the guest-programmed DMA finds it.
    assert.ok(host.kernel.device('6b:00.0').pasidDomains.has(d.pasid));
    assert.deepEqual([...vm1.findings, ...vm2.findings], []);
  });
});

describe('migration refusals and the gIOVA + vSVM limitation', () => {
  it('a VM whose guest uses host-allocated PASIDs does not migrate (seed 003), and nothing moves', () => {
    const src = vmHost({ name: 'src' });
    const vm = new Vm(src, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'host-exposed' } });
    vm.assign('6b:00.0', '00:03.0');
    vm.boot();
    assert.throws(() => migrate(vm, vmHost({ name: 'dst' })), (e: unknown) => e instanceof VmError && /exposes host-allocated PASIDs to the guest/.test(e.message) && /seed 003/.test(e.message));
    assert.equal(vm.host, src);
  });

  it('without the capability, a device with guest IOVA is refused a vSVM bind, with the reason; its PASID DMA faults', () => {
    const host = vmHost();
    // First level advertised but the guest's DMA domain is second level (firstLevel false): IOVA is shadowed.
    const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: false, iovaWithSvm: false } });
    vm.assign('6b:00.0', '00:03.0');
    vm.boot();
    assert.equal(vm.device('00:03.0').space.kind, 'shadow');
    // The guest programs a first-level PASID entry by hand (its driver would need FLTS for SVA).
    const guestDev = vm.kernel.device('00:03.0');
    const p = vm.kernel.newProcess('app');
    p.mmap(0x7f00_0000_0000, 0x1000);
    p.touch(0x7f00_0000_0000);
    writeGuestFirstLevelEntry(vm, guestDev, 5, p.pgd);
    assert.deepEqual(vm.findings.map((f) => f.code), ['iova-and-svm']);
    assert.equal(vm.vmm!.bindOf('00:03.0', 5), undefined);
    assert.equal(vm.dma('00:03.0', { pasid: 5, addr: 0x7f00_0000_0000 }).result.ok, false);
  });
});

/** What a guest driver does to bind a first-level table at `pasid` by hand: the PASID entry, then its flush. */
function writeGuestFirstLevelEntry(vm: Vm, dev: DeviceInfo, pasid: number, pgd: number): void {
  const table = dev.pasidTables.get(Math.floor(pasid / 64))!;
  writePasidEntry(vm.memory, table, pasid, { present: true, pgtt: 1, did: 9, flptptr: pgd });
  vm.kernel.iommus[0]!.qi.submit([Descs.pasidCache(9, pasid)]);
}

describe('migration of mediated work queues and a misconfigured assignment', () => {
  it('after migration the device model reprograms the work queue with the new host PASID; DMA and page requests work as before', () => {
    const src = vmHost({ name: 'src' });
    const dst = vmHost({ name: 'dst' });
    dst.kernel.svaBind('6b:00.0', dst.kernel.newProcess('busy'));
    const vm = new Vm(src, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity' } });
    vm.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID });
    vm.boot();
    const app = vm.kernel.newProcess('app');
    app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
    app.touch(0x7f00_0000_1000, true);
    const sva = vm.kernel.svaBind('00:04.0', app);
    const before = vm.programWorkQueue('00:04.0', 0, sva.pasid)!;
    const gpa = vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_1008 }).gpa;
    const r = migrate(vm, dst);
    const after = vm.device('00:04.0').workQueues.get(0)!.wirePasid!;
    assert.deepEqual(r.hostPasids, [{ from: before, to: after }]);
    assert.notEqual(after, before, 'the destination already used the source\'s host PASID value');
    assert.equal(vm.vmm!.bindOf('00:04.0', sva.pasid)!.hostPasid, after);
    assert.equal(vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_1008 }).gpa, gpa);
    assert.equal(vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_7000, write: true }).result.ok, false);
    assert.ok(vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_7000, write: true }).result.ok);
    assert.deepEqual(vm.findings, []);
    assert.equal(src.kernel.pasids.global.has(before), false, 'the source got its host PASID back');
  });

  it('non-identity PASIDs on an assigned function the guest programs itself, without a split: reported', () => {
    const host = vmHost();
    host.kernel.svaBind('6a:01.0', host.kernel.newProcess('host-app'));
    const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity' } });
    vm.assign('6b:00.0', '00:03.0');
    vm.boot();
    const sva = vm.kernel.svaBind('00:03.0', vm.kernel.newProcess('app'));
    assert.deepEqual(vm.findings.map((f) => f.code), ['guest-pasid-not-on-host']);
    assert.equal(vm.dma('00:03.0', { pasid: sva.pasid, addr: 0x7f00_0000_0000 }).result.ok, false);
  });
});
