import { fail } from './errors';
import { Ida } from './ida';

/** Anything that has a PASID width: a device (DeviceInfo), as `dev->iommu->max_pasids` gives it. */
export interface PasidCapable {
  readonly name: string;
  readonly maxPasids: number;
}

/** IOMMU_NO_PASID: requests without PASID use PASID 0 in scalable mode. */
export const IOMMU_NO_PASID = 0;
/** IOMMU_FIRST_GLOBAL_PASID. */
export const FIRST_GLOBAL_PASID = 1;
export const MAX_PASID_BITS = 20;

/**
 * PASID allocation, as today's kernel does it, plus the per-device spaces and the hybrid local/global split
 * that seed 003 (ENQCMD, SIOV/mdev) needs:
 * - global PASIDs (`iommu_alloc_global_pasid`): one PASID means one address space on every device, which
 *   SVA and ENQCMD need, because a task's IA32_PASID reaches any device it submits work to;
 * - per-device PASIDs: a parent driver marks its subdevices (RID + PASID) in its own device's space;
 * - a global PASID and a per-device PASID never coincide, so a device can serve both at once.
 */
export class PasidAllocator {
  readonly global = new Ida(FIRST_GLOBAL_PASID, 2 ** MAX_PASID_BITS - 1, 'global PASID');
  /**
   * A custom allocator (ioasid_register_allocator): in a guest whose vIOMMU offers virtual commands, global
   * PASIDs come from the VMM (driver/vcmd-pasid.ts) and the IDA is not consulted.
   */
  custom: { readonly name: string; alloc(): number; free(pasid: number): void } | undefined;
  private readonly perDevice = new Map<PasidCapable, Ida>();

  /** `iommu_alloc_global_pasid(dev)`: lowest free PASID in [1, max_pasids - 1] not used by any device space. */
  allocGlobal(devices: PasidCapable | readonly PasidCapable[], min = FIRST_GLOBAL_PASID): number {
    const devs = Array.isArray(devices) ? devices : [devices as PasidCapable];
    if (devs.length === 0) fail('EINVAL', 'a global PASID is allocated for at least one device');
    for (const d of devs) if (d.maxPasids === 0) fail('EOPNOTSUPP', `${d.name} has no PASID support`);
    const max = Math.min(...devs.map((d) => d.maxPasids)) - 1;
    if (this.custom) {
      const p = this.custom.alloc();
      if (p < min || p > max) {
        this.custom.free(p);
        fail('ENOSPC', `${this.custom.name} gave PASID ${p}, outside [${min}, ${max}]`);
      }
      this.global.take(p);
      return p;
    }
    if (min > max) fail('ENOSPC', `no global PASID can be at least ${min}: ${devs.map((d) => `${d.name} supports ${d.maxPasids}`).join(', ')}`);
    for (let p = min; p <= max; p++) {
      if (this.global.has(p) || this.usedByAnyDevice(p)) continue;
      this.global.take(p);
      return p;
    }
    return fail('ENOSPC', `global PASID space [${min}, ${max}] is exhausted`);
  }

  freeGlobal(pasid: number): void {
    this.global.free(pasid);
    this.custom?.free(pasid);
  }

  private usedByAnyDevice(pasid: number): boolean {
    for (const ida of this.perDevice.values()) if (ida.has(pasid)) return true;
    return false;
  }

  private space(dev: PasidCapable): Ida {
    let ida = this.perDevice.get(dev);
    if (!ida) {
      if (dev.maxPasids < 2) fail('EOPNOTSUPP', `${dev.name} has no PASID space (max PASIDs ${dev.maxPasids})`);
      ida = new Ida(1, dev.maxPasids - 1, `PASID of ${dev.name}`);
      this.perDevice.set(dev, ida);
    }
    return ida;
  }

  /** A PASID private to `dev` (a subdevice mark), never one the global space has handed out. */
  allocDevice(dev: PasidCapable, min = 1): number {
    const ida = this.space(dev);
    for (let p = Math.max(min, 1); p <= ida.max; p++) {
      if (ida.has(p) || this.global.has(p)) continue;
      ida.take(p);
      return p;
    }
    return fail('ENOSPC', `${dev.name}: no free PASID at or above ${min}`);
  }

  /** Claims a specific per-device PASID (chosen by a guest or userspace). */
  takeDevice(dev: PasidCapable, pasid: number): void {
    const ida = this.space(dev);
    if (pasid < 1 || pasid > ida.max) fail('ERANGE', `${dev.name}: PASID ${pasid} is outside [1, ${ida.max}]`);
    if (this.global.has(pasid)) fail('EBUSY', `${dev.name}: PASID ${pasid} is a global PASID in use`);
    ida.take(pasid);
  }

  freeDevice(dev: PasidCapable, pasid: number): void {
    this.space(dev).free(pasid);
  }

  deviceUses(dev: PasidCapable, pasid: number): boolean {
    return this.perDevice.get(dev)?.has(pasid) ?? false;
  }
}

/**
 * A PASID context shared by several devices (seed 003's ioasid_fd in "PASID global" mode): a local range
 * [1, globalMin) that the guest manages and that migrates with it, and a global range [globalMin, max) whose
 * PASIDs the host allocates, valid on every device of the context at once. The split applies to every device
 * in the context, not per device, because an ENQCMD guest process bound to two devices must use one PASID on
 * both.
 */
export class PasidContext {
  private readonly devices: PasidCapable[] = [];
  private readonly local = new Map<PasidCapable, Set<number>>();
  private readonly globals = new Set<number>();
  globalMin: number;

  constructor(
    readonly name: string,
    private readonly allocator: PasidAllocator,
    globalMin = 1024,
  ) {
    this.globalMin = globalMin;
  }

  /** `IOASID_HWID_SET_GLOBAL_MIN`: only while no PASID is in use, since the split is migration state. */
  setGlobalMin(min: number): void {
    if (this.globals.size || [...this.local.values()].some((s) => s.size)) fail('EBUSY', `${this.name}: PASIDs are in use; the split cannot move`);
    if (min < 1 || min >= 2 ** MAX_PASID_BITS) fail('EINVAL', `${this.name}: global minimum ${min} is outside [1, 2^20)`);
    for (const d of this.devices) if (d.maxPasids <= min) fail('ERANGE', `${d.name} supports ${d.maxPasids} PASIDs, so no global PASID could reach it above ${min}`);
    this.globalMin = min;
  }

  addDevice(dev: PasidCapable): void {
    if (dev.maxPasids <= this.globalMin) fail('ERANGE', `${dev.name} supports ${dev.maxPasids} PASIDs: the global range starts at ${this.globalMin}`);
    this.devices.push(dev);
    this.local.set(dev, new Set());
  }

  get members(): readonly PasidCapable[] {
    return this.devices;
  }

  /** A guest-chosen PASID for one device: must lie in the local range and be free on that device. */
  useLocal(dev: PasidCapable, pasid: number): void {
    const used = this.local.get(dev) ?? fail('ENODEV', `${dev.name} is not in ${this.name}`);
    if (pasid < 1 || pasid >= this.globalMin) fail('ERANGE', `${this.name}: local PASID ${pasid} must be in [1, ${this.globalMin})`);
    if (used.has(pasid)) fail('EBUSY', `${dev.name}: local PASID ${pasid} is in use`);
    used.add(pasid);
  }

  releaseLocal(dev: PasidCapable, pasid: number): void {
    if (!this.local.get(dev)?.delete(pasid)) fail('EINVAL', `${dev.name}: local PASID ${pasid} is not in use`);
  }

  /** A host-allocated PASID from the global range, valid on every device of the context. */
  allocGlobal(): number {
    if (this.devices.length === 0) fail('EINVAL', `${this.name} has no devices`);
    const p = this.allocator.allocGlobal(this.devices, this.globalMin);
    this.globals.add(p);
    return p;
  }

  freeGlobal(pasid: number): void {
    if (!this.globals.delete(pasid)) fail('EINVAL', `${this.name}: global PASID ${pasid} was not allocated here`);
    this.allocator.freeGlobal(pasid);
  }

  isGlobal(pasid: number): boolean {
    return this.globals.has(pasid);
  }
}
