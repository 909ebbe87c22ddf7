import { formatPciAddress } from '../pci';
import { ATS_PRI_PASID, exampleHost } from './example-host';
import { migrate } from './migration';
import { formatQemuTrace } from './qemu-trace';
import { Vm } from './vm';
import type { VmmStep } from './vmm-log';

/**
 * The seed documents' flows as runnable examples (`iommu-lab vm-flow ID`): each builds its setup on the
 * example host, runs the flow, and returns every VMM step and what came out. The same flows are the
 * end-to-end tests (test/unit/vmm-seeds.test.ts, vmm-vm.test.ts), which check each step; these print them.
 */

export interface FlowOutcome {
  readonly what: string;
  readonly value: string;
}

export interface FlowRun {
  readonly id: string;
  readonly title: string;
  readonly steps: readonly VmmStep[];
  /** QEMU's vtd_* trace of what the VMM did, in QEMU's text. */
  readonly qemuTrace: string;
  readonly outcomes: readonly FlowOutcome[];
}

export interface Flow {
  readonly id: string;
  readonly title: string;
  run(): FlowRun;
}

const hex = (n: number) => '0x' + n.toString(16);

function dmaOutcome(what: string, r: ReturnType<Vm['dma']>): FlowOutcome {
  const res = r.result;
  return {
    what,
    value: res.ok
      ? `${res.output} (GPA ${r.gpa === null ? 'outside guest RAM' : hex(r.gpa)})${r.wirePasid !== undefined ? `, PASID ${r.wirePasid} on the wire` : ''}`
      : `fault 0x${res.reason.toString(16).padStart(2, '0')} ${res.reasonText}${r.wirePasid !== undefined ? `, PASID ${r.wirePasid} on the wire` : ''}`,
  };
}

function finish(id: string, title: string, vms: readonly Vm[], outcomes: FlowOutcome[]): FlowRun {
  const steps = vms.flatMap((v) => v.log.steps);
  const qemuTrace = formatQemuTrace(vms.flatMap((v) => v.vmm?.qemuTrace ?? []).map((event) => ({ event })));
  const findings = vms.flatMap((v) => v.findings);
  outcomes.push({ what: 'findings', value: findings.length ? findings.map((f) => `${f.code}: ${f.message}`).join('; ') : 'none' });
  return { id, title, steps, qemuTrace, outcomes };
}

export const FLOWS: readonly Flow[] = [
  {
    id: '000',
    title: 'Guest and host PASIDs, non-identity, through a mediated device (seed 000 steps 1-7, PRQ and response)',
    run() {
      const host = exampleHost();
      host.kernel.svaBind('6b:00.0', host.kernel.newProcess('host-app')); // the host uses global PASID 1 itself
      const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true, virtualCommand: true }, kernel: { version: '6.1' }, pasids: { policy: 'non-identity' } });
      vm.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID });
      vm.boot();
      const app = vm.kernel.newProcess('app');
      app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
      app.touch(0x7f00_0000_2000, true);
      const sva = vm.kernel.svaBind('00:04.0', app);
      const wire = vm.programWorkQueue('00:04.0', 0, sva.pasid);
      const out: FlowOutcome[] = [{ what: 'guest PASID', value: String(sva.pasid) }, { what: 'host PASID programmed in work queue 0', value: String(wire) }];
      out.push(dmaOutcome('DMA from work queue 0 to a present page', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_2010, write: true })));
      out.push(dmaOutcome('DMA to a page not yet present (page request, guest fault, response)', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_9000, write: true })));
      out.push(dmaOutcome('the same DMA retried', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_9000, write: true })));
      return finish(this.id, this.title, [vm], out);
    },
  },
  {
    id: '001',
    title: "RID and RID+PASID domains under two VMs, with guest SVA nested on each VM's GPA domain (seed 001)",
    run() {
      const host = exampleHost();
      const vm1 = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity' } });
      // vm2's guest programs RID2 itself with its own PASID: a local/global split gives RID2 an entry at the
    // guest's PASID beside the global one (seed 003), while RID1's mdev PASIDs stay host-allocated.
    const vm2 = new Vm(host, { name: 'vm2', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity', globalMin: 1024 } });
      vm1.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID });
      vm2.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID });
      vm2.assign('6b:00.0', '00:05.0');
      vm1.boot();
      vm2.boot();
      const a = vm1.kernel.svaBind('00:04.0', vm1.kernel.newProcess('process1'));
      const d = vm2.kernel.svaBind('00:05.0', vm2.kernel.newProcess('process2'));
      const out: FlowOutcome[] = [];
      for (const name of ['6a:01.0', '6b:00.0']) {
        const dev = host.kernel.device(name);
        out.push({ what: `${dev.name} RID`, value: dev.ridDomain ? `${dev.ridDomain.name} (${dev.ridDomain.type})` : 'blocked' });
        for (const [pasid, dom] of [...dev.pasidDomains].sort(([x], [y]) => x - y)) out.push({ what: `${dev.name} PASID ${pasid}`, value: `${dom.name} (${dom.type}${dom.parent ? ` over ${dom.parent.name}` : ''})` });
      }
      out.push({ what: 'vm1 process1 / vm2 process2 guest PASIDs', value: `${a.pasid} / ${d.pasid}` });
      return finish(this.id, this.title, [vm1, vm2], out);
    },
  },
  {
    id: '002',
    title: 'vSVM with caching mode: guest first level nested over GPA to HPA, first-level invalidations forwarded (seed 002)',
    run() {
      const host = exampleHost();
      const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, vmm: { invalidationPropagation: 'raw' } });
      vm.assign('6b:00.0', '00:03.0');
      vm.boot();
      const app = vm.kernel.newProcess('app');
      app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
      app.touch(0x7f00_0000_3000, true);
      const sva = vm.kernel.svaBind('00:03.0', app);
      const out: FlowOutcome[] = [dmaOutcome(`DMA PASID ${sva.pasid} GVA 0x7f0000003040 (GVA to GPA to HPA)`, vm.dma('00:03.0', { pasid: sva.pasid, addr: 0x7f00_0000_3040, write: true }))];
      app.munmap(0x7f00_0000_3000, 0x1000);
      out.push(dmaOutcome('the same DMA after the guest unmapped the page', vm.dma('00:03.0', { pasid: sva.pasid, addr: 0x7f00_0000_3040 })));
      return finish(this.id, this.title, [vm], out);
    },
  },
  {
    id: '003',
    title: 'ENQCMD and the local/global PASID split (seed 003)',
    run() {
      const host = exampleHost();
      const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true }, pasids: { policy: 'non-identity', globalMin: 1024 } });
      vm.assign('6a:01.0', '00:03.0', undefined, { enqcmd: true });
      vm.assign('6b:00.0', '00:04.0');
      vm.boot();
      const app = vm.kernel.newProcess('app');
      app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
      app.touch(0x7f00_0000_1000, true);
      const sva = vm.kernel.svaBind('00:04.0', app);
      const miss = vm.enqcmd(app, '00:03.0', { addr: 0x7f00_0000_1000 });
      vm.kernel.svaBind('00:03.0', app);
      const hit = vm.enqcmd(app, '00:03.0', { addr: 0x7f00_0000_1008, write: true });
      const out: FlowOutcome[] = [
        { what: 'guest PASID (local range)', value: String(sva.pasid) },
        { what: 'host PASID (global range)', value: String(vm.vmm!.bindOf('00:03.0', sva.pasid)!.hostPasid) },
        { what: 'ENQCMD before the ENQCMD device was bound', value: 'fault' in miss ? `${miss.fault}: ${miss.reason}` : `host PASID ${miss.hostPasid}` },
        { what: 'ENQCMD after', value: 'fault' in hit ? `${hit.fault}: ${hit.reason}` : `IA32_PASID ${hit.guestPasid} sent as host PASID ${hit.hostPasid}` },
      ];
      if (!('fault' in hit) && hit.dma) out.push(dmaOutcome('the descriptor\'s DMA', hit.dma));
      out.push(dmaOutcome('the device without ENQCMD, programmed with the guest PASID', vm.dma('00:04.0', { pasid: sva.pasid, addr: 0x7f00_0000_1008 })));
      return finish(this.id, this.title, [vm], out);
    },
  },
  {
    id: '004',
    title: 'A mediated device under a vIOMMU: the device model needs IOVA to HPA (seed 004)',
    run() {
      const host = exampleHost();
      const vm = new Vm(host, { name: 'vm1', viommu: { cachingMode: true, firstLevel: false } });
      vm.addMdev('6a:01.0', '00:05.0', { caps: { pasid: { width: 20 } } });
      vm.boot();
      const dom = vm.kernel.device('00:05.0').ridDomain!;
      vm.kernel.map(dom, 0x80_0000, 0x30_0000, 0x1000, { read: true, write: true });
      const hpa = vm.deviceModelTranslate('00:05.0', 0x80_0040);
      const out: FlowOutcome[] = [
        { what: 'the guest device structure holds', value: 'IOVA 0x800040' },
        { what: 'the device model resolves it to', value: hpa < 0 ? 'nothing' : `${hex(hpa)} (GPA ${hex(vm.memory.gpa(hpa))})` },
      ];
      out.push(dmaOutcome('the subdevice\'s DMA to IOVA 0x800040', vm.dma('00:05.0', { addr: 0x80_0040 })));
      return finish(this.id, this.title, [vm], out);
    },
  },
  {
    id: 'migrate',
    title: 'Live migration of a VM with a mediated device, guest SVA and non-identity PASIDs to a second host',
    run() {
      const src = exampleHost({ name: 'src' });
      const dst = exampleHost({ name: 'dst' });
      dst.kernel.svaBind('6b:00.0', dst.kernel.newProcess('busy')); // the destination already uses a global PASID
      const vm = new Vm(src, { name: 'vm1', viommu: { cachingMode: true, firstLevel: true, virtualCommand: true }, kernel: { version: '6.1' }, pasids: { policy: 'non-identity' } });
      vm.addMdev('6a:01.0', '00:04.0', { caps: ATS_PRI_PASID });
      vm.boot();
      const app = vm.kernel.newProcess('app');
      app.mmap(0x7f00_0000_0000, 0x10_0000, { write: true });
      app.touch(0x7f00_0000_1000, true);
      const sva = vm.kernel.svaBind('00:04.0', app);
      vm.programWorkQueue('00:04.0', 0, sva.pasid);
      const out: FlowOutcome[] = [dmaOutcome('before: DMA from work queue 0 on src', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_1008 }))];
      const r = migrate(vm, dst);
      out.push({ what: 'guest PASID', value: `${sva.pasid} (unchanged: it is the guest's)` });
      out.push({ what: 'host PASIDs re-allocated', value: r.hostPasids.map((p) => `${p.from} -> ${p.to}`).join(', ') || 'none' });
      out.push({ what: 'devices', value: r.devices.map((d) => `${d.guest}: ${d.from} -> ${d.to}`).join(', ') });
      out.push(dmaOutcome('after: DMA from work queue 0 on dst', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_1008 })));
      out.push(dmaOutcome('after: a page request through dst', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_7000, write: true })));
      out.push(dmaOutcome('after: the same DMA retried', vm.dma('00:04.0', { workQueue: 0, addr: 0x7f00_0000_7000, write: true })));
      out.push({ what: `left on src of ${formatPciAddress(vm.devices[0]!.address)}`, value: src.kernel.domains.filter((d) => d.name.startsWith('vm1')).map((d) => d.name).join(', ') || 'nothing' });
      return finish(this.id, this.title, [vm], out);
    },
  },
];
