// A host for VM tests: one scalable-mode VT-d unit with nesting and first- and second-level translation,
// supervisor requests and page requests, and the devices a VMM assigns: 6a:01.0 (ATS, PRI, PASID; the
// parent of mediated devices, or an assigned PF), 6b:00.0 (ATS, PRI, PASID) and 00:02.0 (no PCIe
// capabilities), under a booted host IommuKernel.
import { vtdUnits } from '../../src/core/vtd/factory';
import { IommuKernel, type KernelOptions } from '../../src/core/driver/kernel';
import { Machine } from '../../src/core/hw/machine';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { Host } from '../../src/core/vmm/host';
import { ATS_PRI_PASID } from './kernel-platform';

export function vmHost(o: { readonly name?: string; readonly features?: VtdFeatures; readonly kernel?: KernelOptions } = {}): Host {
  const m = new Machine();
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features: { supervisorRequests: true, nested: true, firstLevel: true, secondLevel: true, ...o.features } });
  m.addEndpoint('6a:01.0', ATS_PRI_PASID, 'dmar0');
  m.addEndpoint('6b:00.0', ATS_PRI_PASID, 'dmar0');
  m.addEndpoint('00:02.0', {}, 'dmar0');
  const k = new IommuKernel(m, o.kernel).boot();
  return new Host(o.name ?? 'host0', m, k);
}
