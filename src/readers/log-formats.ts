/**
 * Every `format` id a log event can carry: who prints it and in which versions. Version boundaries
 * marked `~` are approximate (taken from patch history, not from a bisect); docs/log-formats.md has the
 * templates and the reasoning.
 */
export interface LogFormat {
  /** What prints it. */
  readonly printer: string;
  /** Versions that print it. */
  readonly versions: string;
}

const f = (printer: string, versions: string): LogFormat => ({ printer, versions });

export const LOG_FORMATS: Record<string, LogFormat> = {
  'vtd-dma-two-line': f('Linux VT-d DMA fault, two lines', 'Linux <= ~4.1'),
  'vtd-dma-decimal': f('Linux VT-d DMA fault, decimal reason', 'Linux ~4.2-5.4'),
  'vtd-dma-pasid-decimal': f('Linux VT-d DMA fault with `PASID %x`, decimal reason', 'Linux ~5.5-5.13'),
  'vtd-dma-5.14': f('Linux VT-d DMA fault, NO_PASID/PASID 0x, 0x-prefixed bus', 'Linux 5.14-~5.19'),
  'vtd-dma-6.0': f('Linux VT-d DMA fault, NO_PASID/PASID 0x', 'Linux ~6.0 and later'),
  'vtd-intr-two-line': f('Linux VT-d interrupt-remapping fault, two lines', 'Linux <= ~4.1'),
  'vtd-intr-decimal': f('Linux VT-d interrupt-remapping fault, decimal reason', 'Linux ~4.2-5.13'),
  'vtd-intr-5.14': f('Linux VT-d interrupt-remapping fault, 0x-prefixed bus', 'Linux 5.14-~5.19'),
  'vtd-intr-6.0': f('Linux VT-d interrupt-remapping fault', 'Linux ~6.0 and later'),
  'vtd-walk-dump': f('Linux CONFIG_DMAR_DEBUG table dump without its fault line', 'Linux 5.17 and later'),
  'vtd-qi-5.13': f('Linux VT-d invalidation queue error report (IQE/ITE/ICE, QI HEAD/PRIOR)', 'Linux 5.13 and later'),
  'vtd-qi-invalid-desc': f('Linux VT-d invalid descriptor (IQE) message', 'Linux <= 5.12 (low=/high= up to ~4.20, qw0 =/qw1 = from 5.0)'),
  'vtd-prq': f('Linux VT-d page request problems and PRQ overflow (`IOMMU: dmarN: ...`)', 'Linux ~5.12 and later'),
  'vtd-prq-invalid': f('Linux VT-d rejected page request with its descriptor', 'Linux 5.14 and later'),
  'vtd-prq-5.x': f('Linux VT-d page request without PASID / for an invalid PASID, with its descriptor', 'Linux ~4.4-5.13'),
  'vtd-prq-5.10': f('Linux VT-d page request problems without the unit name', 'Linux ~5.8-5.11'),
  'vtd-cap': f('Linux VT-d unit capability line at boot', 'Linux 3.x and later'),
  'xen-vtd': f('Xen VT-d DMA fault and its `reason NN - ...` line', 'Xen 4.x'),
  'xen-vtd-intr': f('Xen VT-d interrupt-remapping fault', 'Xen 4.x'),
  'xen-vtd-old': f('Xen VT-d fault (DMA or interrupt) with `[fault reason NNh]` on its second line', 'Xen <= ~4.1'),
  'amd-event-split': f('AMD-Vi event with `Event logged [` and the body on the next line', 'Linux ~4.9-4.14 (earlier kernels joined the two printks into one line)'),
  'amd-event-bdf': f('AMD-Vi event with device=BB:DD.F', 'Linux 2.6.30-~5.18'),
  'amd-event-seg': f('AMD-Vi event with device=SSSS:BB:DD.F', 'Linux ~5.19 and later'),
  'amd-event-per-device': f('AMD-Vi IO_PAGE_FAULT printed by the faulting PCI device (dev_err/pci_err)', 'Linux ~4.17 and later'),
  'amd-event': f('AMD-Vi event that names no device (ILLEGAL_COMMAND_ERROR, COMMAND_HARDWARE_ERROR, UNKNOWN)', 'Linux 2.6.30 and later'),
  'amd-not-attached': f('AMD-Vi IO_PAGE_FAULT of a device with no domain', 'Linux ~6.x'),
  'amd-completion-wait': f('AMD-Vi completion-wait timeout', 'Linux 3.x and later'),
  'amd-no-event': f('AMD-Vi empty event-log entry (erratum 732)', 'Linux ~4.x and later'),
  'xen-amd-vi': f('Xen AMD-Vi IO_PAGE_FAULT: `%pp d%u addr ... flags ...` with the flags spelled out', 'Xen 4.14 and later'),
  'xen-amd-vi-old': f('Xen AMD-Vi IO_PAGE_FAULT: `domain = %d, device id = %#x, fault address = ...`', 'Xen <= 4.13 (flags from 4.3)'),
  'xen-amd-vi-event': f('Xen AMD-Vi event other than IO_PAGE_FAULT: its name and the four raw words', 'Xen 4.14 and later (before: with iommu=debug, after `AMD-Vi: `)'),
  'smmu-raw': f('SMMUv3 raw event record (`event 0xNN received:` + 4 dwords)', 'Linux 4.2 and later'),
  'smmu-decoded': f('SMMUv3 raw record followed by the decoded event lines', 'Linux ~6.15 and later'),
  'smmu-decoded-only': f('SMMUv3 decoded event lines without the raw record', 'Linux ~6.15 and later'),
  'smmu-overflow': f('SMMUv3 event or PRI queue overflow', 'Linux 4.2 and later'),
  'smmu-gerror': f('SMMUv3 global error', 'Linux 4.2 and later'),
  'smmu-cmdq-error': f('SMMUv3 command queue error', 'Linux 4.2 and later'),
  'smmu-cmd-sync-timeout': f('SMMUv3 CMD_SYNC timeout', 'Linux ~4.15-5.x'),
  'smmu-pri-unexpected': f('SMMUv3 unexpected PRI request', 'Linux 4.2 and later'),
  'kernel-ratelimit': f('`<function>: N callbacks suppressed` of an IOMMU function', 'Linux 4.x and later'),
  'qemu-trace': f('QEMU intel-iommu trace event (log backend)', 'QEMU 2.x and later'),
  'qemu-error': f('QEMU intel-iommu error_report line', 'QEMU 2.x and later'),
  'ftrace-intel-iommu': f('intel_iommu tracepoint (qi_submit, prq_report, cache_tag_*)', 'Linux ~5.8 and later (cache_tag_* 6.10+)'),
  'ftrace-iommu': f('generic iommu tracepoint (map, unmap, attach, groups, io_page_fault)', 'Linux 3.x and later'),
};
