// The platform most driver-model tests boot: one VT-d unit (dmar0, supervisor requests on) with a device that
// has ATS, PRI and PASID, one with ATS and PASID only, and a plain one, under an IommuKernel; and the check
// that a kernel operation fails with a given errno.
import * as assert from 'node:assert/strict';
import type { EndpointCapabilities } from '../../src/core/hw/endpoint';
import { Machine } from '../../src/core/hw/machine';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import type { VtdUnit } from '../../src/core/vtd/unit';
import { KernelError } from '../../src/core/driver/errors';
import { IommuKernel, type KernelOptions } from '../../src/core/driver/kernel';
import { vtdUnits } from '../../src/core/vtd/factory';

export const ATS_PRI_PASID: EndpointCapabilities = { ats: {}, pri: {}, pasid: { width: 20 } };

export interface PlatformOptions {
  readonly features?: VtdFeatures;
  readonly kernel?: KernelOptions;
  /** The endpoints behind dmar0 by BDF; default 6a:01.0 (ATS, PRI, PASID), 6b:00.0 (ATS, PASID), 00:02.0. */
  readonly devices?: Record<string, EndpointCapabilities>;
}

export function platform(o: PlatformOptions = {}): { m: Machine; k: IommuKernel; unit: VtdUnit } {
  const m = new Machine();
  const unit = m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features: { supervisorRequests: true, ...o.features } });
  for (const [bdf, caps] of Object.entries(o.devices ?? { '6a:01.0': ATS_PRI_PASID, '6b:00.0': { ats: {}, pasid: { width: 20 } }, '00:02.0': {} })) m.addEndpoint(bdf, caps, 'dmar0');
  const k = new IommuKernel(m, o.kernel).boot();
  return { m, k, unit };
}

/** `fn` throws the KernelError of `errno` (an operation the kernel refuses). */
export const throwsErrno = (fn: () => unknown, errno: string): void =>
  assert.throws(fn, (e: unknown) => e instanceof KernelError && e.errno === errno, `expected ${errno}`);

export interface TwoSegmentOptions {
  /** dmar1's features beside the default (supervisor requests on): e.g. `{ supervisorRequests: false }`. */
  readonly dmar1?: VtdFeatures;
  readonly kernel?: KernelOptions;
}

/**
 * Two DRHDs of two PCI segments, as a two-socket server's DMAR table has them: dmar0 serves segment 0 and
 * dmar1 segment 1, and each has a 6a:01.0 (ATS, PRI, PASID) and a plain 00:02.0 behind it; segment 1 has a
 * second function 00:02.1 in the slot of its 00:02.0. The endpoints are added segment 0 first, the order
 * PCI enumeration finds them (host bridges in segment order).
 */
export function twoSegmentPlatform(o: TwoSegmentOptions = {}): { m: Machine; k: IommuKernel; unit0: VtdUnit; unit1: VtdUnit } {
  const m = new Machine();
  const unit0 = m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, segment: 0, features: { supervisorRequests: true } });
  const unit1 = m.addUnit(vtdUnits, { name: 'dmar1', regBase: 0xbb3f_c000, segment: 1, features: { supervisorRequests: true, ...o.dmar1 } });
  m.addEndpoint('0000:6a:01.0', ATS_PRI_PASID, unit0);
  m.addEndpoint('0000:00:02.0', {}, unit0);
  m.addEndpoint('0001:6a:01.0', ATS_PRI_PASID, unit1);
  m.addEndpoint('0001:00:02.0', {}, unit1);
  m.addEndpoint('0001:00:02.1', {}, unit1);
  const k = new IommuKernel(m, o.kernel).boot();
  return { m, k, unit0, unit1 };
}
