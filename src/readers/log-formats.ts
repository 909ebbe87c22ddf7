/**
 * Every `format` id a log event can carry: who prints it and in which versions. The commit that makes each
 * boundary, or why it is not pinned, is in docs/log-formats.md beside it (and, for the Linux VT-d formats, in
 * FORMAT_CHANGES of src/core/driver/log.ts). `since`/`until` say the VT-d ranges in a form a test can check:
 * the first and last mainline release that prints the format, null for "open". A version in an id is the
 * first release that prints the format (0.1 had `vtd-dma-6.0`, `vtd-intr-6.0` and `vtd-prq-5.10`, named before
 * their boundaries were checked; CHANGELOG lists the renames). A `~` marks a boundary that is not pinned.
 */
export interface LogFormat {
  /** What prints it. */
  readonly printer: string;
  /** Versions that print it. */
  readonly versions: string;
  /** First and last mainline Linux release that print it (VT-d formats); null: no bound, or not known. */
  readonly since?: string | null;
  readonly until?: string | null;
}

const f = (printer: string, versions: string, since?: string | null, until?: string | null): LogFormat => ({
  printer,
  versions,
  ...(since !== undefined ? { since, until: until ?? null } : {}),
});

export const LOG_FORMATS: Record<string, LogFormat> = {
  'vtd-dma-two-line': f('Linux VT-d DMA fault, one record of two lines', 'Linux <= 4.6 (`dmar: ` before the first line up to 4.1, `DMAR: ` from 4.2)', null, '4.6'),
  'vtd-dma-decimal': f('Linux VT-d DMA fault, decimal reason', 'Linux 4.7-5.3', '4.7', '5.3'),
  'vtd-dma-pasid-decimal': f('Linux VT-d DMA fault with `PASID %x`, decimal reason', 'Linux 5.4-5.13', '5.4', '5.13'),
  'vtd-dma-5.14': f('Linux VT-d DMA fault, NO_PASID/PASID 0x, 0x-prefixed bus', 'Linux 5.14 only', '5.14', '5.14'),
  'vtd-dma-5.15': f('Linux VT-d DMA fault, NO_PASID/PASID 0x', 'Linux 5.15 and later', '5.15', null),
  'vtd-intr-two-line': f('Linux VT-d interrupt-remapping fault, one record of two lines', 'Linux <= 4.6 (`dmar: ` before the first line up to 4.1, `DMAR: ` from 4.2)', null, '4.6'),
  'vtd-intr-decimal': f('Linux VT-d interrupt-remapping fault, decimal reason', 'Linux 4.7-5.13', '4.7', '5.13'),
  'vtd-intr-5.14': f('Linux VT-d interrupt-remapping fault, 0x-prefixed bus', 'Linux 5.14 only', '5.14', '5.14'),
  'vtd-intr-5.15': f('Linux VT-d interrupt-remapping fault', 'Linux 5.15 and later', '5.15', null),
  'vtd-walk-dump': f('Linux CONFIG_DMAR_DEBUG table dump without its fault line', 'Linux 5.16 and later', '5.16', null),
  'vtd-qi-5.13': f('Linux VT-d invalidation queue error report (IQE/ITE/ICE, QI HEAD/PRIOR)', 'Linux 5.13 and later', '5.13', null),
  'vtd-qi-invalid-desc': f('Linux VT-d invalid descriptor (IQE) message', 'Linux <= 5.12 (low=/high= up to 4.20, qw0 =/qw1 = from 5.0)', null, '5.12'),
  'vtd-prq': f('Linux VT-d page request problems and PRQ overflow (`IOMMU: dmarN: ...`)', 'Linux 5.12 and later (overflow lines from 5.12, problem lines from 5.14; `Page request without PASID` up to 6.12)', '5.12', null),
  'vtd-prq-invalid': f('Linux VT-d rejected page request with its descriptor', 'Linux 5.14 and later', '5.14', null),
  'vtd-prq-5.x': f('Linux VT-d page request without PASID / for an invalid PASID, with its descriptor', 'Linux 4.4-5.13 (a222a7f0bb6c "iommu/vt-d: Implement page request handling" to ae7f09b14b4f)', '4.4', '5.13'),
  'vtd-prq-5.13': f('Linux VT-d page request problems without the unit name', 'Linux 5.13 (and the 5.10.y, 5.12.y stable backports)', '5.13', '5.13'),
  'vtd-cap': f('Linux VT-d unit capability line at boot', 'Linux ~3.x (not pinned) and later (`IOMMU %d:` instead of the unit name before 4.2)', null, null),
  'xen-vtd': f('Xen VT-d DMA fault and its `reason NN - ...` line', 'Xen 4.6 and later (f0250f4b48)'),
  'xen-vtd-intr': f('Xen VT-d interrupt-remapping fault', 'Xen 4.6 and later (f0250f4b48)'),
  'xen-vtd-old': f('Xen VT-d fault (DMA or interrupt) with `[fault reason NNh]` on its second line', 'Xen up to 4.5 (before f0250f4b48)'),
  'amd-event-split': f('AMD-Vi event with `Event logged [` and the body on the next line', 'Linux ~4.9 until 1a21ee1aabf7 (two printks without KERN_CONT, then two dev_err calls; not pinned)'),
  'amd-event-bdf': f('AMD-Vi event with device=BB:DD.F', 'Linux 2.6.30-5.19'),
  'amd-event-seg': f('AMD-Vi event with device=SSSS:BB:DD.F', 'Linux 6.0 and later (b36a5b0f1ced)'),
  'amd-event-per-device': f('AMD-Vi IO_PAGE_FAULT printed by the faulting PCI device (dev_err/pci_err)', 'Linux ~4.17 and later (the start is not pinned)'),
  'amd-event': f('AMD-Vi event that names no device (ILLEGAL_COMMAND_ERROR, COMMAND_HARDWARE_ERROR, UNKNOWN)', 'Linux ~2.6.30 and later (the driver\'s first releases, not pinned)'),
  'amd-not-attached': f('AMD-Vi IO_PAGE_FAULT of a device with no domain', 'Linux 6.3 and 6.1.y stable (996d120b4de2); still printed by 6.12; removed by a 2025 patch whose release is not pinned'),
  'amd-completion-wait': f('AMD-Vi completion-wait timeout', 'Linux ~3.x and later (not pinned); `IOMMU %04x:%02x:%02x.%01x: ` before it after 6.12'),
  'amd-no-event': f('AMD-Vi empty event-log entry (erratum 732)', 'Linux ~4.x and later (not pinned; 5.10, 6.1 and 6.12 print it)'),
  'xen-amd-vi': f('Xen AMD-Vi IO_PAGE_FAULT: `%pp d%u addr ... flags ...` with the flags spelled out', 'Xen 4.14 and later'),
  'xen-amd-vi-old': f('Xen AMD-Vi IO_PAGE_FAULT: `domain = %d, device id = %#x, fault address = ...`', 'Xen <= 4.13 (flags from 4.3)'),
  'xen-amd-vi-event': f('Xen AMD-Vi event other than IO_PAGE_FAULT: its name and the four raw words', 'Xen 4.14 and later (before: with iommu=debug, after `AMD-Vi: `)'),
  'smmu-raw': f('SMMUv3 raw event record (`event 0xNN received:` + 4 dwords)', 'Linux ~4.2 (the driver\'s first release, not pinned) and later'),
  'smmu-decoded': f('SMMUv3 raw record followed by the decoded event lines', 'Linux 6.14 and later (d814b70b9b90)'),
  'smmu-decoded-only': f('SMMUv3 decoded event lines without the raw record (an excerpt: the kernel prints both)', 'Linux 6.14 and later (d814b70b9b90)'),
  'smmu-overflow': f('SMMUv3 event or PRI queue overflow', 'Linux ~4.2 and later'),
  'smmu-gerror': f('SMMUv3 global error', 'Linux ~4.2 and later'),
  'smmu-cmdq-error': f('SMMUv3 command queue error', 'Linux ~4.2 and later'),
  'smmu-cmd-sync-timeout': f('SMMUv3 CMD_SYNC timeout', 'Linux ~5.4 and later (not pinned; 5.10, 6.1 and 6.12 print it)'),
  'smmu-pri-unexpected': f('SMMUv3 unexpected PRI request', 'Linux ~4.2 and later'),
  'vtd-pte-already-set': f('Linux VT-d `ERROR: DMA PTE for vPFN ... already set (to ... not ...)` of __domain_mapping', 'Linux 2.6.x and later (the same text in 5.10, 6.1 and 6.12; its first release is not pinned)'),
  'iommu-iopf-aborted': f('IOMMU core `<driver> <device>: iopf with pasid %d aborted` (io-pgfault.c)', 'Linux 6.11 and later (not in 6.1; in 6.12; commit not pinned)'),
  'kernel-ratelimit': f('`<function>: N callbacks suppressed` of an IOMMU function', 'Linux ~2.6 and later (lib/ratelimit.c; per function: dmar_fault from 4.7)'),
  'qemu-trace': f('QEMU intel-iommu trace event (log backend)', 'QEMU ~2.x and later (not pinned)'),
  'qemu-error': f('QEMU intel-iommu error_report line', 'QEMU ~2.x and later (not pinned)'),
  'ftrace-intel-iommu': f('intel_iommu tracepoint (qi_submit, prq_report, cache_tag_*)', 'Linux 5.12 and later (qi_submit f2dd871799ba; prq_report 5.14, e93a67f5a0ee; cache_tag_* 6.10, 446a68c58d2e)'),
  'ftrace-iommu': f('generic iommu tracepoint (map, unmap, attach, groups, io_page_fault)', 'Linux ~3.13 and later (not pinned; map/unmap end address 5.17, 94aedac49d92; detach_device_from_domain until 6.2, 1b932ceddd19)'),
};
