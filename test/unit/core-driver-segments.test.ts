// PCI segments in the driver model: two DRHDs, each serving its own segment (the DMAR table's DRHD structures
// carry a Segment Number), with the same bus:device.function behind each. Linux tells such devices apart by
// their segment everywhere: device names print `SSSS:BB:DD.F` (dev_name of a PCI device), each IOMMU finds
// the devices that report to it in its own list (6.12 prq.c: device_rbtree_find(iommu, req->rid)), debugfs
// walks only the units of a device's segment (debugfs.c: `if (seg != iommu->segment) continue;`). Fault lines
// print only BB:DD.F (dmar.c: "Request device [%02x:%02x.%d]"), which is why they need their unit to mean anything.
import * as assert from 'node:assert/strict';
import type { HwEvent } from '../../src/core/hw/events';
import type { Machine } from '../../src/core/hw/machine';
import type { DmaFault, PageFault } from '../../src/core/driver/domain';
import type { IommuKernel } from '../../src/core/driver/kernel';
import { kernelDebugfsView, renderDebugfs } from '../../src/core/driver/debugfs';
import { HWPT_ALLOC, Iommufd, VTD_S1 } from '../../src/core/iommufd';
import { describe as descriptorText } from '../support/descriptors';
import { guestTable } from '../support/guest-table';
import { allocNested, BASE, BUFFER, BUFFER_SIZE, GUEST_PGD, mapFixed } from '../support/iommufd';
import { throwsErrno, twoSegmentPlatform } from '../support/kernel-platform';

/** Invalidation descriptors the units processed while `fn` ran, each prefixed with its unit's name. */
function descriptorsByUnit(m: Machine, fn: () => void): string[] {
  const seen: string[] = [];
  const stop = m.events.subscribe((e: HwEvent) => {
    if (e.type === 'invalidation') seen.push(`${e.unit}: ${descriptorText(e)}`);
  });
  try {
    fn();
  } finally {
    stop();
  }
  return seen.filter((d) => !/: inv_wait /.test(d));
}

/** Which unit did what while `fn` ran, for the event types named. */
function eventsDuring(m: Machine, types: readonly HwEvent['type'][], fn: () => void): HwEvent[] {
  const seen: HwEvent[] = [];
  const stop = m.events.subscribe((e: HwEvent) => {
    if (types.includes(e.type)) seen.push(e);
  });
  try {
    fn();
  } finally {
    stop();
  }
  return seen;
}

const linesDuring = (k: IommuKernel, fn: () => void): string[] => {
  const before = k.log.lines.length;
  fn();
  return k.log.lines.slice(before).map((l) => l.text);
};

describe('driver model: PCI segments (the same BDF behind two DRHDs of two segments)', () => {
  it('probes both functions as two devices, each on its own unit; a bare BDF or RID means segment 0', () => {
    const { k } = twoSegmentPlatform();
    assert.equal(k.devices.size, 5);
    const zero = k.device('6a:01.0');
    const one = k.device('0001:6a:01.0');
    assert.notEqual(zero, one);
    assert.deepEqual([zero.name, zero.iommu.name, zero.segment, zero.sid], ['0000:6a:01.0', 'dmar0', 0, 0x6a08]);
    assert.deepEqual([one.name, one.iommu.name, one.segment, one.sid], ['0001:6a:01.0', 'dmar1', 1, 0x6a08]);
    assert.equal(k.device('0000:6a:01.0'), zero);
    assert.equal(k.device(0x6a08), zero);
    assert.equal(k.device(0x6a08, 1), one);
    assert.equal(k.device(one), one);
    throwsErrno(() => k.device('0002:6a:01.0'), 'ENODEV');
    throwsErrno(() => k.device(0x0011, 0), 'ENODEV'); // 00:02.1 is in segment 1 only
    assert.equal(k.device(0x0011, 1).name, '0001:00:02.1');
    // Each has its own default domain, PASID table and context entry, on its own unit.
    assert.notEqual(zero.ridDomain, one.ridDomain);
    assert.notEqual(zero.pasidDir, one.pasidDir);
    assert.deepEqual([zero.atsEnabled, zero.priEnabled, zero.pasidEnabled, one.atsEnabled, one.priEnabled, one.pasidEnabled], [true, true, true, true, true, true]);
  });

  it('iommu groups per segment: the same slot in two segments is two groups, a slot\'s functions share one; dev_* lines print the segment', () => {
    const { k } = twoSegmentPlatform();
    // pci_device_group: functions of one slot share a group only on the same bus (get_pci_function_alias_group
    // compares tmp->bus, a different pci_bus in each segment); iommu_group_alloc numbers groups with ida_alloc
    // in probe order. dev_info's prefix is the driver name ("pci" for the bus, none bound) and dev_name,
    // which for PCI is "%04x:%02x:%02x.%d" (pci_setup_device).
    const added = k.log.lines.map((l) => l.text).filter((t) => t.includes('Adding to iommu group'));
    assert.deepEqual(added, [
      'pci 0000:6a:01.0: Adding to iommu group 0',
      'pci 0000:00:02.0: Adding to iommu group 1',
      'pci 0001:6a:01.0: Adding to iommu group 2',
      'pci 0001:00:02.0: Adding to iommu group 3',
      'pci 0001:00:02.1: Adding to iommu group 3',
    ]);
    assert.deepEqual(['6a:01.0', '00:02.0', '0001:6a:01.0', '0001:00:02.0', '0001:00:02.1'].map((d) => k.device(d).group), [0, 1, 2, 3, 3]);
  });

  it('releasing a device of segment 1 leaves its namesake in segment 0 probed, and frees only its own group', () => {
    const { k } = twoSegmentPlatform();
    const zero = k.device('6a:01.0');
    k.releaseDevice('0001:6a:01.0');
    throwsErrno(() => k.device('0001:6a:01.0'), 'ENODEV');
    assert.equal(k.device('6a:01.0'), zero);
    assert.equal(zero.group, 0);
    assert.equal(k.devices.size, 4);
    // The freed number 2 is the lowest free one: a new group takes it (ida_alloc).
    const again = k.probeDevice(k.machine.endpoint('0001:6a:01.0'));
    assert.equal(again.group, 2);
    assert.equal(k.device('0001:6a:01.0'), again);
  });

  it('attached to different domains, each translates through its own: DMA goes to its own unit, the flushes too', () => {
    const { m, k } = twoSegmentPlatform();
    const a = k.allocPagingDomain({ stage: 'first', name: 'a' });
    const b = k.allocPagingDomain({ stage: 'first', name: 'b' });
    k.map(a, 0x10_0000, 0x9000_0000, 0x1000);
    k.map(b, 0x10_0000, 0xa000_0000, 0x1000);
    const attachB = descriptorsByUnit(m, () => k.attachDevice(b, '0001:6a:01.0'));
    assert.ok(attachB.length > 0 && attachB.every((d) => d.startsWith('dmar1: ')), attachB.join('\n'));
    k.attachDevice(a, '6a:01.0');
    assert.equal(k.device('6a:01.0').ridDomain, a);
    assert.equal(k.device('0001:6a:01.0').ridDomain, b);
    assert.deepEqual(a.attachments.map((x) => x.device.name), ['0000:6a:01.0']);
    assert.deepEqual(b.attachments.map((x) => x.device.name), ['0001:6a:01.0']);

    let zero, one;
    const translations = eventsDuring(m, ['translation'], () => {
      zero = k.dma('6a:01.0', { addr: 0x10_0123 });
      one = k.dma('0001:6a:01.0', { addr: 0x10_0123 });
    });
    assert.ok(zero!.result.ok && one!.result.ok);
    assert.deepEqual([zero!.device, zero!.result.output, one!.device, one!.result.output], ['0000:6a:01.0', '0x90000123', '0001:6a:01.0', '0xa0000123']);
    assert.deepEqual([...new Set(translations.map((e) => e.unit))], ['dmar0', 'dmar1']);
    // Each endpoint's device TLB holds its own translation.
    assert.equal(k.machine.endpoint('0000:6a:01.0').lookup(-1, 0x10_0000)?.output, 0x9000_0000);
    assert.equal(k.machine.endpoint('0001:6a:01.0').lookup(-1, 0x10_0000)?.output, 0xa000_0000);

    // Unmapping b flushes dmar1 only, with the device TLB of the RID 6a:01.0 there: intel_iommu_tlb_sync's
    // cache_tag_flush_range, IH = list_empty(&gather->freelist), and no table page was freed.
    const did = k.didOf(b, k.device('0001:6a:01.0').iommu);
    const unmapB = descriptorsByUnit(m, () => k.unmap(b, 0x10_0000, 0x1000));
    assert.deepEqual(unmapB, [`dmar1: p_iotlb_inv G=3 DID=${did} PASID=0 ADDR=0x100000 AM=0 IH=1`, 'dmar1: dev_tlb_inv SID=0x6a08 QDEP=0 ADDR=0x100000 S=0']);
    assert.equal(k.machine.endpoint('0001:6a:01.0').lookup(-1, 0x10_0000), undefined);
    assert.equal(k.machine.endpoint('0000:6a:01.0').lookup(-1, 0x10_0000)?.output, 0x9000_0000, 'segment 0\'s device TLB is untouched');
    assert.equal(k.dma('6a:01.0', { addr: 0x10_0123 }).result.ok, true);
  });

  it('a fault from each device is recorded and handled on its own unit, and reaches its own domain\'s handler; the line prints BB:DD.F', () => {
    const { m, k, unit0, unit1 } = twoSegmentPlatform();
    const handled: string[] = [];
    for (const [label, name] of [['segment 0', '00:02.0'], ['segment 1', '0001:00:02.0']] as const) {
      k.device(name).ridDomain!.setFaultHandler((f: DmaFault) => handled.push(`${label}'s domain: ${f.device.name} ${f.address} 0x${f.reason.toString(16)}`));
    }
    let faults: HwEvent[] = [];
    const lines = linesDuring(k, () => {
      faults = eventsDuring(m, ['fault'], () => {
        k.dma('00:02.0', { addr: 0x1000_0000 });
        k.dma('0001:00:02.0', { addr: 0x2000_0000 });
      });
    });
    assert.deepEqual(faults.map((e) => e.type === 'fault' && [e.unit, e.sid, e.address, e.outcome]), [
      ['dmar0', 0x0010, '0x10000000', 'recorded'],
      ['dmar1', 0x0010, '0x20000000', 'recorded'],
    ]);
    // dmar.c (6.12): "DRHD: handling fault status reg %x", then dmar_fault_do_one's
    // "[%s NO_PASID] Request device [%02x:%02x.%d] fault addr 0x%llx [fault reason 0x%02x] %s"; the text of
    // 0x71 from dma_remap_sm_fault_reasons.
    const line = (addr: string) => `DMAR: [DMA Read NO_PASID] Request device [00:02.0] fault addr ${addr} [fault reason 0x71] SM: Present bit in first-level paging entry is clear`;
    assert.deepEqual(lines, ['DMAR: DRHD: handling fault status reg 2', line('0x10000000'), 'DMAR: DRHD: handling fault status reg 2', line('0x20000000')]);
    assert.deepEqual(handled, ["segment 0's domain: 0000:00:02.0 0x10000000 0x71", "segment 1's domain: 0001:00:02.0 0x20000000 0x71"]);
    assert.deepEqual([unit0.pendingFaults().length, unit1.pendingFaults().length], [0, 0], 'each handler cleared its unit\'s records');
  });

  it('page requests from each device go to its own domain\'s handler, and the response leaves through its own unit to it', () => {
    const { m, k } = twoSegmentPlatform();
    const seen: string[] = [];
    const a = k.allocPagingDomain({ stage: 'first', name: 'a' });
    const b = k.allocPagingDomain({ stage: 'first', name: 'b' });
    const group = (g: readonly PageFault[]) => g.map((f) => `${f.device.name} PASID ${f.pasid} 0x${f.address.toString(16)}`).join(', ');
    a.iopfHandler = (g) => (seen.push(`a: ${group(g)}`), 'success');
    b.iopfHandler = (g) => (seen.push(`b: ${group(g)}`), 'deferred');
    k.attachDevicePasid(a, '6a:01.0', 5);
    k.attachDevicePasid(b, '0001:6a:01.0', 5);
    let zero, one;
    const stream = descriptorsByUnit(m, () => {
      zero = k.dma('6a:01.0', { pasid: 5, addr: 0x4000 });
      one = k.dma('0001:6a:01.0', { pasid: 5, addr: 0x7000 });
    });
    assert.deepEqual([zero!.pageRequest?.outcome, one!.pageRequest?.outcome], ['queued', 'queued']);
    assert.deepEqual(seen, ['a: 0000:6a:01.0 PASID 5 0x4000', 'b: 0001:6a:01.0 PASID 5 0x7000']);
    // a answered at once (IOMMU_PAGE_RESP_SUCCESS, 0) on dmar0; b's group waits.
    assert.deepEqual(stream, [`dmar0: page_grp_resp RID=0x6a08 PP=1 PASID=5 PRGI=${zero!.pageRequest!.prgIndex} LPIG=1 RC=0`]);
    assert.equal(k.machine.endpoint('0000:6a:01.0').pendingGroups.length, 0);
    assert.equal(k.machine.endpoint('0001:6a:01.0').pendingGroups.length, 1);
    // The deferred response names the device by its segment and leaves through dmar1.
    const later = descriptorsByUnit(m, () => k.pageResponse('0001:6a:01.0', 5, one!.pageRequest!.prgIndex, 'success'));
    assert.deepEqual(later, [`dmar1: page_grp_resp RID=0x6a08 PP=1 PASID=5 PRGI=${one!.pageRequest!.prgIndex} LPIG=1 RC=0`]);
    assert.equal(k.machine.endpoint('0001:6a:01.0').pendingGroups.length, 0);
    throwsErrno(() => k.pageResponse('6a:01.0', 5, one!.pageRequest!.prgIndex, 'success'), 'EINVAL');
  });

  it('debugfs renders both units and both devices, each domain file from its own segment\'s unit', () => {
    const { k, unit0, unit1 } = twoSegmentPlatform();
    const a = k.allocPagingDomain({ stage: 'first', name: 'a' });
    const b = k.allocPagingDomain({ stage: 'first', name: 'b' });
    k.map(a, 0x10_0000, 0x9000_0000, 0x1000);
    k.map(b, 0x10_0000, 0xa000_0000, 0x1000);
    k.attachDevice(a, '6a:01.0');
    k.attachDevice(b, '0001:6a:01.0');
    k.attachDevicePasid(b, '0001:6a:01.0', 0x2a);
    const files = renderDebugfs(kernelDebugfsView(k));
    // One directory per device, named by dev_name; a PASID subdirectory named "%x" (6.7+).
    const deviceFiles = [...files.keys()].filter((p) => p.endsWith('/domain_translation_struct')).sort();
    assert.deepEqual(deviceFiles, [
      '0000:00:02.0/domain_translation_struct',
      '0000:6a:01.0/domain_translation_struct',
      '0001:00:02.0/domain_translation_struct',
      '0001:00:02.1/domain_translation_struct',
      '0001:6a:01.0/2a/domain_translation_struct',
      '0001:6a:01.0/domain_translation_struct',
    ]);
    // "IOMMU %s: Root Table Address: 0x%llx" for each unit, RTADDR's table (without its SMT bit).
    const titles = files.get('dmar_translation_struct')!.split('\n').filter((l) => l.startsWith('IOMMU '));
    assert.deepEqual(titles, [`IOMMU dmar0: Root Table Address: 0x${unit0.rootTableAddress.toString(16)}`, `IOMMU dmar1: Root Table Address: 0x${unit1.rootTableAddress.toString(16)}`]);
    // "Device %04x:%02x:%02x.%x " with iommu->segment, then "with pasid %x @0x%llx" (the first-stage root);
    // rows "0x%013lx |\t" and the five levels' entries, the PTE last.
    const leaf = (path: string) => {
      const text = files.get(path)!.split('\n');
      const row = text.find((l) => l.startsWith('0x0000000000100 |\t'));
      assert.ok(row, `${path} has the row of IOVA pfn 0x100:\n${text.join('\n')}`);
      return { title: text[0], frame: BigInt(row.split('\t').at(-1)!) & 0xf_ffff_ffff_f000n };
    };
    assert.deepEqual(leaf('0000:6a:01.0/domain_translation_struct'), { title: `Device 0000:6a:01.0 with pasid 0 @0x${a.pageTable!.root.toString(16)}`, frame: 0x9000_0000n });
    assert.deepEqual(leaf('0001:6a:01.0/domain_translation_struct'), { title: `Device 0001:6a:01.0 with pasid 0 @0x${b.pageTable!.root.toString(16)}`, frame: 0xa000_0000n });
    assert.deepEqual(leaf('0001:6a:01.0/2a/domain_translation_struct'), { title: `Device 0001:6a:01.0 with pasid 2a @0x${b.pageTable!.root.toString(16)}`, frame: 0xa000_0000n });
  });

  it('SRE is refused on the unit without ECAP.SRS only (intel_pasid_setup_nested), at the RID and at a PASID, with the unit\'s name', () => {
    const { k } = twoSegmentPlatform({ dmar1: { supervisorRequests: false } });
    assert.deepEqual([k.iommus[0]!.unit.ecap.srs, k.iommus[1]!.unit.ecap.srs], [1, 0]);
    const parent = k.allocPagingDomain({ nestParent: true });
    const s1 = { sre: true, eafe: false, wpe: false, addrWidth: 48, pgtblAddr: guestTable(k, parent, []).root };
    // pasid.c: pr_err_ratelimited("No supervisor request support on %s\n", iommu->name), pr_fmt "DMAR: ".
    const rid1 = k.allocNestedDomain(parent, s1);
    const lines = linesDuring(k, () => throwsErrno(() => k.attachDevice(rid1, '0001:6a:01.0'), 'EINVAL'));
    assert.deepEqual(lines, ['DMAR: No supervisor request support on dmar1']);
    assert.equal(k.device('0001:6a:01.0').ridDomain, undefined, 'the refused attach left the RID blocked');
    const pasid1 = k.allocNestedDomain(parent, s1);
    throwsErrno(() => k.attachDevicePasid(pasid1, '0001:6a:01.0', 9), 'EINVAL');
    assert.equal(k.device('0001:6a:01.0').pasidDomains.size, 0);
    // The same S1 data on segment 0's namesake, behind dmar0 with SRS, is set up, at the RID and at a PASID.
    const rid0 = k.allocNestedDomain(parent, s1);
    assert.deepEqual(linesDuring(k, () => k.attachDevice(rid0, '6a:01.0')), []);
    assert.equal(k.device('6a:01.0').ridDomain, rid0);
    k.attachDevicePasid(k.allocNestedDomain(parent, s1), '6a:01.0', 9);
    assert.equal(k.device('6a:01.0').pasidDomains.size, 1);
  });

  it('iommufd: a VTD_S1 HWPT with SRE attaches to the device behind the unit with SRS, and EINVAL behind the one without', () => {
    const { k } = twoSegmentPlatform({ dmar1: { supervisorRequests: false }, kernel: { interruptRemapping: true } });
    const fd = new Iommufd(k);
    fd.mm.mmap(Number(BUFFER), Number(BUFFER_SIZE));
    const { ioasId } = fd.ioasAlloc();
    mapFixed(fd, ioasId, BASE, BUFFER_SIZE);
    const nestedFor = (bdf: string) => {
      const vfio = fd.bindDevice(bdf);
      vfio.attachPt({ ptId: ioasId });
      const parent = fd.hwptAlloc({ devId: vfio.devId, ptId: ioasId, flags: HWPT_ALLOC.NEST_PARENT }).hwptId;
      // intel_iommu_domain_alloc_nested takes the flags (only unknown ones are EINVAL); the attach checks SRS.
      return { vfio, nested: allocNested(fd, vfio.devId, parent, { data: { pgtblAddr: GUEST_PGD, addrWidth: 48, flags: VTD_S1.SRE } }) };
    };
    const zero = nestedFor('6a:01.0');
    const one = nestedFor('0001:6a:01.0');
    zero.vfio.attachPt({ ptId: zero.nested });
    const lines = linesDuring(k, () => throwsErrno(() => one.vfio.attachPt({ ptId: one.nested }), 'EINVAL'));
    assert.deepEqual(lines, ['DMAR: No supervisor request support on dmar1']);
    assert.equal(k.device('6a:01.0').ridDomain?.type, 'nested');
  });
});
