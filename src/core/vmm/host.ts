import type { Machine } from '../hw/machine';
import type { IommuKernel } from '../driver/kernel';

/**
 * A host: its platform (memory, IOMMU units, physical devices) and the Linux IOMMU driver running on it.
 * VMs run on a host; live migration moves a VM to another one. The host hands each VM a window of host
 * physical memory for its RAM (guest-memory.ts).
 */
export class Host {
  /** Where the next VM's RAM goes: high in host memory, above the region the host allocates tables from. */
  private nextRam: number;
  private static readonly RAM_ALIGN = 0x4000_0000;

  constructor(
    readonly name: string,
    readonly machine: Machine,
    readonly kernel: IommuKernel,
    options: { readonly ramBase?: number } = {},
  ) {
    this.nextRam = options.ramBase ?? 2 ** Math.min(machine.memory.hostAddressWidth - 2, 44);
  }

  /** Reserves host-physical memory for a VM's RAM (1 GiB aligned, so the GPA map can use 1 GiB pages). */
  reserveRam(size: number): number {
    const base = this.nextRam;
    if (base + size > 2 ** this.machine.memory.hostAddressWidth) throw new RangeError(`host ${this.name} has no room for 0x${size.toString(16)} bytes of guest RAM`);
    this.nextRam = base + Math.ceil(size / Host.RAM_ALIGN) * Host.RAM_ALIGN;
    return base;
  }
}
