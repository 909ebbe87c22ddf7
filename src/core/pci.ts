/** A PCI function address. The RID (requester ID) is what an IOMMU sees on the wire: bus[15:8] dev[7:3] fn[2:0]. */
export interface PciAddress {
  readonly segment: number;
  readonly bus: number;
  readonly device: number;
  readonly fn: number;
}

const PCI_ADDRESS = /^(?:([0-9a-fA-F]{1,4}):)?([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])$/;

/** Parses `SSSS:BB:DD.F` or `BB:DD.F` (hex, as lspci prints). Returns undefined for anything else. */
export function parsePciAddress(text: string): PciAddress | undefined {
  const m = PCI_ADDRESS.exec(text);
  if (!m) return undefined;
  const device = parseInt(m[3]!, 16);
  if (device > 0x1f) return undefined;
  return { segment: m[1] ? parseInt(m[1], 16) : 0, bus: parseInt(m[2]!, 16), device, fn: parseInt(m[4]!, 10) };
}

export function pciRid(a: PciAddress): number {
  return (a.bus << 8) | (a.device << 3) | a.fn;
}

/**
 * One number per (segment, RID), for maps of devices: RIDs repeat in every PCI segment, so the pair is a
 * function's identity. Segments are 16 bits and RIDs 16, so the key stays below 2^32.
 */
export function pciDeviceKey(segment: number, rid: number): number {
  return segment * 0x1_0000 + rid;
}

export function pciFromRid(rid: number, segment = 0): PciAddress {
  return { segment, bus: (rid >> 8) & 0xff, device: (rid >> 3) & 0x1f, fn: rid & 7 };
}

/** `SSSS:BB:DD.F`, the form sysfs and debugfs use. */
export function formatPciAddress(a: PciAddress): string {
  return `${hex(a.segment, 4)}:${hex(a.bus, 2)}:${hex(a.device, 2)}.${a.fn}`;
}

/** `BB:DD.F`, the form VT-d fault lines use (they never print the segment). */
export function formatBdf(a: PciAddress): string {
  return `${hex(a.bus, 2)}:${hex(a.device, 2)}.${a.fn}`;
}

function hex(v: number, width: number): string {
  return v.toString(16).padStart(width, '0');
}
