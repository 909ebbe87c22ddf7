/**
 * Every `format` id a log event can carry: who prints it and in which versions. For the Linux VT-d formats
 * the versions are the releases the kernel's history gives (the commits are in FORMAT_CHANGES,
 * src/core/driver/log.ts, and docs/log-formats.md), and `since`/`until` say the same in a form a test can
 * check: the first and last mainline release that prints the format, null for "open". An id names the
 * shape of the message, not its versions: `vtd-dma-6.0` is printed from 5.15 (its name predates that
 * finding and stays, as JSON output carries it). Boundaries marked `~` elsewhere (AMD, SMMU, Xen, QEMU) are
 * approximate: taken from patch history, not from a bisect.
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
  'vtd-dma-6.0': f('Linux VT-d DMA fault, NO_PASID/PASID 0x', 'Linux 5.15 and later', '5.15', null),
  'vtd-intr-two-line': f('Linux VT-d interrupt-remapping fault, one record of two lines', 'Linux <= 4.6 (`dmar: ` before the first line up to 4.1, `DMAR: ` from 4.2)', null, '4.6'),
  'vtd-intr-decimal': f('Linux VT-d interrupt-remapping fault, decimal reason', 'Linux 4.7-5.13', '4.7', '5.13'),
  'vtd-intr-5.14': f('Linux VT-d interrupt-remapping fault, 0x-prefixed bus', 'Linux 5.14 only', '5.14', '5.14'),
  'vtd-intr-6.0': f('Linux VT-d interrupt-remapping fault', 'Linux 5.15 and later', '5.15', null),
  'vtd-walk-dump': f('Linux CONFIG_DMAR_DEBUG table dump without its fault line', 'Linux 5.16 and later', '5.16', null),
  'vtd-qi-5.13': f('Linux VT-d invalidation queue error report (IQE/ITE/ICE, QI HEAD/PRIOR)', 'Linux 5.13 and later', '5.13', null),
  'vtd-qi-invalid-desc': f('Linux VT-d invalid descriptor (IQE) message', 'Linux <= 5.12 (low=/high= up to 4.20, qw0 =/qw1 = from 5.0)', null, '5.12'),
  'vtd-prq': f('Linux VT-d page request problems and PRQ overflow (`IOMMU: dmarN: ...`)', 'Linux 5.12 and later (overflow lines from 5.12, problem lines from 5.14; `Page request without PASID` up to 6.12)', '5.12', null),
  'vtd-prq-invalid': f('Linux VT-d rejected page request with its descriptor', 'Linux 5.14 and later', '5.14', null),
  'vtd-prq-5.x': f('Linux VT-d page request without PASID / for an invalid PASID, with its descriptor', 'Linux 4.4-5.13 (4.4, the first SVM kernel, not pinned)', null, '5.13'),
  'vtd-prq-5.10': f('Linux VT-d page request problems without the unit name', 'Linux 5.13 (and the 5.10.y, 5.12.y stable backports)', '5.13', '5.13'),
  'vtd-cap': f('Linux VT-d unit capability line at boot', 'Linux 3.x and later (`IOMMU %d:` instead of the unit name before 4.2)', null, null),
  'xen-vtd': f('Xen VT-d DMA fault and its `reason NN - ...` line', 'Xen 4.x'),
  'xen-vtd-intr': f('Xen VT-d interrupt-remapping fault', 'Xen 4.x'),
  'xen-vtd-old': f('Xen VT-d fault (DMA or interrupt) with `[fault reason NNh]` on its second line', 'Xen <= ~4.1'),
  'amd-event-split': f('AMD-Vi event with `Event logged [` and the body on the next line', 'Linux ~4.9-4.14 (earlier kernels joined the two printks into one line)'),
  'amd-event-bdf': f('AMD-Vi event with device=BB:DD.F', 'Linux 2.6.30-5.19'),
  'amd-event-seg': f('AMD-Vi event with device=SSSS:BB:DD.F', 'Linux 6.0 and later (b36a5b0f1ced)'),
  'amd-event-per-device': f('AMD-Vi IO_PAGE_FAULT printed by the faulting PCI device (dev_err/pci_err)', 'Linux ~4.17 and later'),
  'amd-event': f('AMD-Vi event that names no device (ILLEGAL_COMMAND_ERROR, COMMAND_HARDWARE_ERROR, UNKNOWN)', 'Linux 2.6.30 and later'),
  'amd-not-attached': f('AMD-Vi IO_PAGE_FAULT of a device with no domain', 'Linux 6.3 and 6.1.y stable (996d120b4de2); still printed by 6.12'),
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
  'smmu-cmd-sync-timeout': f('SMMUv3 CMD_SYNC timeout', 'Linux ~5.4 and later (5.10, 6.1 and 6.12 print it)'),
  'smmu-pri-unexpected': f('SMMUv3 unexpected PRI request', 'Linux 4.2 and later'),
  'kernel-ratelimit': f('`<function>: N callbacks suppressed` of an IOMMU function', 'Linux 4.x and later'),
  'qemu-trace': f('QEMU intel-iommu trace event (log backend)', 'QEMU 2.x and later'),
  'qemu-error': f('QEMU intel-iommu error_report line', 'QEMU 2.x and later'),
  'ftrace-intel-iommu': f('intel_iommu tracepoint (qi_submit, prq_report, cache_tag_*)', 'Linux ~5.8 and later (cache_tag_* 6.10+)'),
  'ftrace-iommu': f('generic iommu tracepoint (map, unmap, attach, groups, io_page_fault)', 'Linux 3.x and later'),
};
