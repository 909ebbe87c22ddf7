import type { PciAddress } from '../pci';

/**
 * IOMMU groups (drivers/iommu/iommu.c): which group a probed device joins, and the group's number.
 *
 * pci_device_group's rules, of which only the multi-function one applies to the model (it has no bridges,
 * no DMA aliases and no ACS capability): the functions of one slot (segment, bus, device) share a group;
 * any other device gets a new one. The kernel finds a sibling's group by walking every PCI device
 * (get_pci_function_alias_group's for_each_pci_dev); the model keeps the groups by slot, so a probe costs
 * the same with 65,536 devices as with one.
 *
 * Numbers come from the group IDA: iommu_group_alloc takes ida_alloc's lowest free number, and
 * iommu_group_release gives it back (ida_free) when the last device leaves the group.
 */
export class IommuGroups {
  /** Live groups by slot: their number and how many devices are in them. */
  private readonly bySlot = new Map<number, { readonly id: number; members: number }>();
  /** Numbers below `next` that released groups gave back, in ascending order. */
  private readonly freed: number[] = [];
  private next = 0;

  /** iommu_group_get_for_dev: the sibling functions' group, or a new one; the device is then a member. */
  join(a: PciAddress): number {
    const key = slotKey(a);
    const live = this.bySlot.get(key);
    if (live) {
      live.members++;
      return live.id;
    }
    const id = this.freed.length ? this.freed.shift()! : this.next++;
    this.bySlot.set(key, { id, members: 1 });
    return id;
  }

  /** iommu_group_remove_device: the device leaves; an empty group is released and its number freed. */
  leave(a: PciAddress): void {
    const key = slotKey(a);
    const live = this.bySlot.get(key);
    if (!live) return;
    if (--live.members > 0) return;
    this.bySlot.delete(key);
    const at = this.freed.findIndex((n) => n > live.id);
    this.freed.splice(at < 0 ? this.freed.length : at, 0, live.id);
  }
}

/** Segment (16 bits), bus (8) and device (5): 29 bits, one number. */
function slotKey(a: PciAddress): number {
  return a.segment * 0x2000 + a.bus * 0x20 + a.device;
}
