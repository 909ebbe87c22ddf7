// A VT-d platform booted by the driver model with an iommufd context on top, plus the user buffer the
// iommufd selftests map, so uAPI tests read like the selftests they replay.
import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { EndpointCapabilities } from '../../src/core/hw/endpoint';
import { Machine } from '../../src/core/hw/machine';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { KernelError } from '../../src/core/driver/errors';
import { IommuKernel } from '../../src/core/driver/kernel';
import { HWPT_DATA, IOAS_MAP, Iommufd, IoctlError, readBytes, writeBytes, type HwptInvalidateCmd, type IommufdOptions, type VtdS1Data } from '../../src/core/iommufd';
import { vtdUnits } from '../../src/core/vtd/factory';

/** The selftests' PAGE_SIZE and BUFFER_SIZE (16 pages), and where the buffer sits in the user process. */
export const P = 4096n;
export const BUFFER_SIZE = 16n * P;
export const BUFFER = 0x7000_0000n;
/** MOCK_APERTURE_START: the selftests' base IOVA when a domain exists; kept as the base here too. */
export const BASE = 0x100_0000n;

export const ATS_PRI_PASID: EndpointCapabilities = { ats: {}, pri: {}, pasid: { width: 20 } };

/** PASID-capable devices with ATS and PRI (the selftests' MOCK_FLAGS_DEVICE_PASID devices) and plain ones. */
export const DEVICES: Record<string, EndpointCapabilities> = {
  '6a:01.0': ATS_PRI_PASID,
  '00:02.0': {},
  '6b:00.0': ATS_PRI_PASID,
  '00:03.0': {},
};

export interface PlatformOptions {
  readonly features?: VtdFeatures;
  /** Second-stage A/D support (ECAP.SLADS). */
  readonly dirtyTracking?: boolean;
  readonly devices?: Record<string, EndpointCapabilities>;
  /** A second unit, dmar1, with its own features and devices (e.g. one without dirty tracking). */
  readonly dmar1?: { readonly features?: VtdFeatures; readonly devices: Record<string, EndpointCapabilities> };
  readonly iommufd?: IommufdOptions;
}

export function platform(o: PlatformOptions = {}) {
  const m = new Machine();
  const features: VtdFeatures = { supervisorRequests: true, secondLevelAccessDirty: o.dirtyTracking, ...o.features };
  m.addUnit(vtdUnits, { name: 'dmar0', regBase: 0xaa3f_c000, features });
  for (const [bdf, caps] of Object.entries(o.devices ?? DEVICES)) m.addEndpoint(bdf, caps, 'dmar0');
  if (o.dmar1) {
    m.addUnit(vtdUnits, { name: 'dmar1', regBase: 0xaa3f_e000, features: { supervisorRequests: true, ...o.dmar1.features } });
    for (const [bdf, caps] of Object.entries(o.dmar1.devices)) m.addEndpoint(bdf, caps, 'dmar1');
  }
  // intremap=on where the units have ECAP.IR: MSIs are then isolated, as iommufd_device_bind requires.
  const k = new IommuKernel(m, { interruptRemapping: features.interruptRemapping !== false }).boot();
  const fd = new Iommufd(k, o.iommufd);
  fd.mm.mmap(Number(BUFFER), Number(BUFFER_SIZE));
  return { m, k, fd, mm: fd.mm };
}

/** Runs `fn`, expecting the kernel error `errno`; returns the error (IoctlError when the ioctl wrote outputs). */
export function errnoOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 'ok';
}

export function throwsErrno<O = unknown>(fn: () => unknown, errno: string): IoctlError<O> {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof KernelError, `expected ${errno}, got ${caught === undefined ? 'success' : String(caught)}`);
  assert.equal(caught.errno, errno, caught.message);
  return caught as IoctlError<O>;
}

/** Where a DMA read from `dev` at `iova` lands: the physical address, or `fault 0x..` with the reason. */
export function dmaTarget(k: IommuKernel, dev: string, iova: bigint | number, o: { pasid?: number; write?: boolean } = {}): string {
  const r = k.dma(dev, { addr: Number(iova), ...o }).result;
  return r.ok ? r.output : `fault 0x${r.reason.toString(16)}`;
}

/** The physical page behind a user address of the process (faulting it in as the CPU would). */
export function userPhys(fd: Iommufd, va: bigint): string {
  fd.mm.touch(Number(va));
  const hit = fd.mm.pageTable.lookup(Number(va));
  assert.ok(hit, `user address 0x${va.toString(16)} is not mapped`);
  return '0x' + hit.output.toString(16);
}

export const RW = IOAS_MAP.READABLE | IOAS_MAP.WRITEABLE;
export const FIXED_RW = IOAS_MAP.FIXED_IOVA | RW;

/** test_ioctl_ioas_map_fixed. */
export function mapFixed(fd: Iommufd, ioasId: number, iova: bigint, length: bigint, userVa = BUFFER): void {
  fd.ioasMap({ ioasId, flags: FIXED_RW, userVa, length, iova });
}

/** test_ioctl_ioas_map: the kernel picks the IOVA. */
export function mapAuto(fd: Iommufd, ioasId: number, length: bigint, userVa = BUFFER): bigint {
  return fd.ioasMap({ ioasId, flags: RW, userVa, length }).iova;
}

/** test_ioctl_ioas_unmap: returns the bytes unmapped. */
export function unmap(fd: Iommufd, ioasId: number, iova: bigint, length: bigint): bigint {
  return fd.ioasUnmap({ ioasId, iova, length }).length;
}

/** test_cmd_hwpt_invalidate: the errno (or 'ok') and the entry_num written back, on success and failure alike. */
export function invalidate(fd: Iommufd, cmd: HwptInvalidateCmd): { errno: string; entryNum: number } {
  try {
    return { errno: 'ok', entryNum: fd.hwptInvalidate(cmd).entryNum };
  } catch (e) {
    if (e instanceof IoctlError) return { errno: e.errno, entryNum: (e.out as { entryNum: number }).entryNum };
    throw e;
  }
}

/** A guest first-level root: a zeroed page of guest RAM, which is the user buffer mapped at BASE in the IOAS. */
export const GUEST_PGD = BASE;
export const S1: VtdS1Data = { pgtblAddr: GUEST_PGD, addrWidth: 48 };

/** test_cmd_hwpt_alloc_nested with VTD_S1 data. */
export function allocNested(fd: Iommufd, devId: number, ptId: number, o: { flags?: number; faultId?: number; data?: VtdS1Data } = {}): number {
  return fd.hwptAlloc({ devId, ptId, flags: o.flags ?? 0, dataType: HWPT_DATA.VTD_S1, data: o.data ?? S1, ...(o.faultId !== undefined ? { faultId: o.faultId } : {}) }).hwptId;
}

/** Writes bytes into the process's memory at `va`, as the process itself would. */
export function writeUser(fd: Iommufd, va: bigint, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; ) {
    const at = va + BigInt(i);
    const n = Math.min(4096 - Number(at % 4096n), bytes.length - i);
    writeBytes(fd.kernel.machine.memory, Number(BigInt(userPhys(fd, at))), bytes.subarray(i, i + n));
    i += n;
  }
}

/** A deterministic byte pattern. */
export function pattern(length: number, seed = 1): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

/** Reads `length` bytes of the process's memory at `va` (what the process sees in its buffer). */
export function readUser(fd: Iommufd, va: bigint, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; ) {
    const at = va + BigInt(i);
    const n = Math.min(4096 - Number(at % 4096n), length - i);
    out.set(readBytes(fd.kernel.machine.memory, Number(BigInt(userPhys(fd, at))), n), i);
    i += n;
  }
  return out;
}

/** test_bit on a user bitmap (bit n of byte n / 8). */
export function testBit(bitmap: Uint8Array, n: number): boolean {
  return ((bitmap[n >>> 3]! >>> (n & 7)) & 1) === 1;
}

/**
 * test/fixtures/iommufd-uapi.json: the uAPI struct sizes and offsets and each ioctl's number and min_size,
 * read by hand off the kernel header and op table (see the fixture for the commits).
 */
export interface UapiFixture {
  readonly structs: Record<string, { readonly size: number; readonly offsets: Record<string, number> }>;
  readonly ioctls: Record<string, { readonly nr: number; readonly struct: string; readonly last: string; readonly minSize: number }>;
}

export const UAPI: UapiFixture = JSON.parse(readFileSync(join(__dirname, '../../../test/fixtures/iommufd-uapi.json'), 'utf8'));
