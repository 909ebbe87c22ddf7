// A simulated machine in a state worth dumping: scalable and legacy units, first- and second-stage domains
// with 4K/2M/1G mappings, PASID attachments, pass-through, nested binds and SVA, an invalidation queue that
// has been used. The debugfs tests render it, parse it back and compare.
import { contextAddress } from '../../src/core/driver/debugfs';
import { linuxFaultReason } from '../../src/core/vtd/fault-reasons';
import { pasidEntryAddress, rootEntryAddress } from '../../src/core/vtd/tables';
import { IommuKernel } from '../../src/core/driver/kernel';
import { Machine } from '../../src/core/hw/machine';
import { guestTable } from './guest-table';
import { vtdUnits } from '../../src/core/vtd/factory';

export interface DebugfsScenario {
  /** A second, legacy-mode unit with one device. */
  readonly legacyUnit: boolean;
  readonly cachingMode: boolean;
  readonly firstStage: boolean;
  /** Mappings in the shared domain: IOVA page, output page, size class. */
  readonly maps: readonly { readonly iovaPage: number; readonly outPage: number; readonly size: '4K' | '2M' | '1G'; readonly write: boolean }[];
  readonly pasids: readonly number[];
  readonly nested: boolean;
  readonly sva: boolean;
  readonly identityDevice: boolean;
  /** 5-level second-level tables (SAGAW bit 3, MGAW 57): the IOMMU's AW is then 3. */
  readonly fiveLevel?: boolean;
}

const SIZE = { '4K': 0x1000, '2M': 0x20_0000, '1G': 0x4000_0000 } as const;

export function debugfsKernel(s: DebugfsScenario): IommuKernel {
  const m = new Machine();
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xfed9_0000, features: { supervisorRequests: true, cachingMode: s.cachingMode, agaws: s.fiveLevel ? [48, 57] : [48], firstLevel5Level: true } });
  if (s.legacyUnit) m.addUnit(vtdUnits, { name: 'dmar1', regBase: 0xfed9_1000, features: { scalableMode: false } });
  m.addEndpoint('6a:01.0', { ats: {}, pri: {}, pasid: { width: 20 } }, 'dmar0');
  m.addEndpoint('6b:00.0', { ats: {}, pasid: { width: 20 } }, 'dmar0');
  m.addEndpoint('00:04.0', {}, 'dmar0');
  if (s.identityDevice) m.addEndpoint('00:14.0', {}, 'dmar0');
  if (s.legacyUnit) m.addEndpoint('00:02.0', {}, 'dmar1');
  const k = new IommuKernel(m).boot();
  const d = k.allocPagingDomain({ stage: s.firstStage && !s.legacyUnit ? 'first' : 'second', name: 'shared' });
  const used: [number, number][] = [];
  for (const map of s.maps) {
    const size = SIZE[map.size];
    const iova = map.iovaPage * size;
    if (used.some(([a, b]) => iova < b && a < iova + size)) continue;
    used.push([iova, iova + size]);
    k.map(d, iova, 0x1_0000_0000 + map.outPage * size, size, { read: true, write: map.write });
  }
  if (s.identityDevice) k.attachDevice(k.identity, '00:14.0');
  for (const p of s.pasids) k.attachDevicePasid(d, '6a:01.0', p);
  k.attachDevice(d, '00:04.0');
  if (s.legacyUnit) k.map(k.device('00:02.0').ridDomain!, 0xfff0_0000, 0x3000_0000, 0x3000);
  if (s.nested && !s.legacyUnit) {
    const parent = k.allocPagingDomain({ nestParent: true, name: 'parent' });
    k.map(parent, 0x1_0000_0000, 0x2_0000_0000, 0x20_0000);
    k.bindPgtablePasid(parent, '6b:00.0', guestTable(k, parent, [[0x4000_0000, 0x1_0000_1000]]).root, 0x77);
  }
  if (s.sva) {
    const p = k.newProcess('app');
    p.mmap(0x7f00_0000_0000, 0x10_0000);
    p.touch(0x7f00_0000_0000, true);
    p.touch(0x7f00_0000_3000);
    k.svaBind('6b:00.0', p);
  }
  return k;
}

/**
 * A dmesg as Linux 6.12 prints a DMA fault of a device at a PASID with CONFIG_DMAR_DEBUG, written from the
 * pr_err/pr_info formats of dmar_fault_do_one() (dmar.c) and dmar_fault_dump_ptes() (iommu.c), with the
 * entries read from the simulated machine's memory.
 */
export function faultDump(k: IommuKernel, device: string, pasid: number, iova: number, contextLo?: number): string {
  const dev = k.device(device);
  const unit = dev.iommu.unit;
  const mem = k.machine.memory;
  const q = (v: number) => '0x' + v.toString(16).padStart(16, '0');
  const hex = (at: number) => q(mem.readHi(at) * 0x1_0000_0000 + mem.readLo(at));
  const root = rootEntryAddress(unit.rootTableAddress, dev.sid >> 8);
  const ctx = contextAddress(mem, unit.rootTableAddress, true, dev.sid >> 8, dev.sid & 0xff)!;
  const dirEntry = dev.pasidDir + Math.floor(pasid / 64) * 8;
  const table = (mem.readHi(dirEntry) & 0xf_ffff) * 0x1_0000_0000 + ((mem.readLo(dirEntry) & 0xffff_f000) >>> 0);
  const entry = pasidEntryAddress(table, pasid);
  const bdf = `${(dev.sid >> 8).toString(16).padStart(2, '0')}:${((dev.sid >> 3) & 0x1f).toString(16).padStart(2, '0')}.${dev.sid & 7}`;
  const lines = [
    'DRHD: handling fault status reg 2',
    `[DMA Read PASID 0x${pasid.toString(16)}] Request device [${bdf}] fault addr 0x${iova.toString(16)} [fault reason 0x06] ${linuxFaultReason(6).text}`,
    `Dump ${unit.name} table entries for IOVA 0x${iova.toString(16)}`,
    `scalable mode root entry: hi ${hex(root + 8)}, low ${hex(root)}`,
    `context entry: hi ${hex(ctx + 8)}, low ${contextLo === undefined ? hex(ctx) : q(contextLo)}`,
    `pasid dir entry: ${hex(dirEntry)}`,
    ...Array.from({ length: 8 }, (_, i) => `pasid table entry[${i}]: ${hex(entry + i * 8)}`),
    'pte level: 4, pte value: 0x0000000000000000',
    'page table not present at level 3',
  ];
  return lines.map((l, i) => `[  100.${String(i).padStart(6, '0')}] DMAR: ${l}`).join('\n') + '\n';
}
