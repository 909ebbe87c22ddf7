import { IommuKernel, type KernelOptions } from '../driver/kernel';
import type { EndpointCapabilities } from '../hw/endpoint';
import { Machine } from '../hw/machine';
import type { VtdFeatures } from '../vtd/cap';
import { vtdUnits } from '../vtd/factory';
import { Host } from './host';

/** ATS, PRI and a 20-bit PASID capability: what an SVA-capable device (or an mdev parent) has. */
export const ATS_PRI_PASID: EndpointCapabilities = { ats: {}, pri: {}, pasid: { width: 20 } };

/**
 * The host the VM examples and tests run on: one scalable-mode VT-d unit with nesting, first- and
 * second-level translation, supervisor and page requests (dmar0), and the devices a VMM gives guests:
 * 6a:01.0 and 6b:00.0 (ATS, PRI, PASID: assignable functions or mdev parents) and 00:02.0 (no PCIe
 * capabilities), under a booted host driver.
 */
export function exampleHost(o: { readonly name?: string; readonly features?: VtdFeatures; readonly kernel?: KernelOptions } = {}): Host {
  const m = new Machine();
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features: { supervisorRequests: true, nested: true, firstLevel: true, secondLevel: true, ...o.features } });
  m.addEndpoint('6a:01.0', ATS_PRI_PASID, 'dmar0');
  m.addEndpoint('6b:00.0', ATS_PRI_PASID, 'dmar0');
  m.addEndpoint('00:02.0', {}, 'dmar0');
  return new Host(o.name ?? 'host0', m, new IommuKernel(m, o.kernel).boot());
}
