import { type Endpoint, PCI_PRI_STATUS_STOPPED } from '../hw/endpoint';
import type { Errno } from './errors';

/**
 * The PCI core's PRI helpers (drivers/pci/ats.c) as the VT-d driver uses them: pci_reset_pri, then
 * pci_enable_pri, when it turns PRI on (6.1 iommu_enable_pci_caps, 6.12 intel_iommu_enable_iopf, 6.17
 * iommu_enable_pci_pri at probe), pci_disable_pri when it turns it off. `coreEnabled` is the PCI core's own
 * `pdev->pri_enabled`, which the first two refuse with a WARN_ON (EBUSY). Each returns the errno the kernel
 * function would return, or undefined for 0.
 */

/** pci_reset_pri: a write of PRI Control with Reset alone (Enable clear), dropping the pending requests. */
export function pciResetPri(ep: Endpoint, coreEnabled: boolean): Errno | undefined {
  if (coreEnabled) return 'EBUSY';
  if (!ep.caps.pri) return 'EINVAL';
  ep.setPriControl(false, true);
  return undefined;
}

/**
 * pci_enable_pri: EBUSY unless PRI Status says Stopped (Enable clear, nothing outstanding); then the
 * outstanding allocation and a write of Enable, which clears RF and UPRGI on the device.
 */
export function pciEnablePri(ep: Endpoint, coreEnabled: boolean): Errno | undefined {
  if (coreEnabled) return 'EBUSY';
  if (!ep.caps.pri) return 'EINVAL';
  if (!(ep.priStatus & PCI_PRI_STATUS_STOPPED)) return 'EBUSY';
  ep.setPriControl(true);
  return undefined;
}

/** pci_disable_pri: Enable cleared, nothing else; RF and UPRGI stay as they are. */
export function pciDisablePri(ep: Endpoint): void {
  if (ep.caps.pri) ep.setPriControl(false);
}
