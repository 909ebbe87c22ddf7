import { DOMAIN_HEADER, LATENCY_HEADER } from '../core/driver/debugfs';

/**
 * The lines of the VT-d debugfs files (drivers/iommu/intel/debugfs.c), for src/readers/debugfs.ts: each as the
 * kernel prints it, and each with its whitespace normalised.
 */

/**
 * Each line as drivers/iommu/intel/debugfs.c prints it, separators and padding included (the `seq_printf`
 * format is quoted beside each), matched without trimming: a reader that trims or takes any whitespace
 * would hide a renderer that prints the wrong separators. Where kernels differ, every form is listed.
 */
export const EXACT = {
  /** `IOMMU: %s Register Base Address: %llx` (iommu_regset and dmar_perf_latency) */
  regsetTitle: /^IOMMU: (\S+) Register Base Address: ([0-9a-f]{1,16})$/,
  invalidBase: /^IOMMU: Invalid base address$/,
  /** `%-16s\t0x%02x\t\t0x%016llx` */
  regsetRow: /^([A-Z][A-Z0-9_]*)( *)\t0x([0-9a-f]{2,4})\t\t0x([0-9a-f]{16})$/,
  /** `IOMMU %s: Root Table Address: 0x%llx` */
  translationTitle: /^IOMMU (\S+): Root Table Address: 0x([0-9a-f]{1,16})$/,
  /**
   * `%02x:%02x.%x\t0x%016llx:0x%016llx\t0x%016llx:0x%016llx\t` then `%-6d\t0x%016llx:0x%016llx:0x%016llx`;
   * the first kernels (4.20) ended the row after the context entry.
   */
  translationRow:
    /^([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])\t0x([0-9a-f]{16}):0x([0-9a-f]{16})\t0x([0-9a-f]{16}):0x([0-9a-f]{16})(?:\t(-?\d{1,7})( *)\t0x([0-9a-f]{16}):0x([0-9a-f]{16}):0x([0-9a-f]{16}))?$/,
  /** `DMA Remapping is not enabled on %s` */
  disabled: /^DMA Remapping is not enabled on (\S+)$/,
  /** `Invalidation queue on IOMMU: %s` */
  queueTitle: /^Invalidation queue on IOMMU: (\S+)$/,
  /** ` Base: 0x%llx\tHead: %lld\tTail: %lld` */
  queueGeometry: /^ Base: 0x([0-9a-f]{1,16})\tHead: (\d{1,20})\tTail: (\d{1,20})$/,
  /** `%5d\t%016llx\t%016llx\t%016x`, or with qw2 and qw3 (ECAP.SMTS) */
  queueRow: /^( *)(\d{1,5})\t([0-9a-f]{16})\t([0-9a-f]{16})(?:\t([0-9a-f]{16})\t([0-9a-f]{16}))?\t([0-9a-f]{16})$/,
  /** `Remapped Interrupt supported on IOMMU: %s`, `Posted Interrupt supported on IOMMU: %s` */
  irTitle: /^(Remapped|Posted) Interrupt supported on IOMMU: (\S+)$/,
  /** ` IR table address:%llx` */
  irTable: /^ IR table address:([0-9a-f]{1,16})$/,
  /** ` %-5d %02x:%02x.%01x %08x %02x  %016llx\t%016llx`, posted with `%08x %08x` (PDA high, low) */
  irRow: /^ (\d{1,5})( *) ([0-9a-f]{2}):([0-9a-f]{2})\.([0-7]) ([0-9a-f]{8})(?: ([0-9a-f]{8}))? ([0-9a-f]{2})  ([0-9a-f]{16})\t([0-9a-f]{16})$/,
  /**
   * `Device %04x:%02x:%02x.%x ` then `with pasid %x @0x%llx` or `@0x%llx` (6.7+, per device and PASID, since
   * 2b437e804566 "iommu/vt-d: debugfs: Support dumping a specified page table"); before, `Device %s with pasid
   * %d @0x%llx` (5.x, one global file) and `Device %s @0x%llx` (6.1).
   */
  domainTitle: /^Device (\S+) (?:with pasid ([0-9a-fA-F]{1,8}) )?@0x([0-9a-f]{1,16})$/,
  /** dmar_perf_latency rows: `%s` of a padded type name, then `%12lld` per column. */
  latencyRow: /^(?: {3}inv_iotlb| {2}inv_devtlb| {5}inv_iec| {5}svm_prq)(?: *-?\d{1,20}){10}$/,
} as const;

/** Lines printed with `seq_puts`, exactly. */
export const FIXED = new Map<string, 'regset-header' | 'translation-header' | 'queue-header-wide' | 'queue-header' | 'ir-header' | 'ir-posted-header' | 'ir-not-enabled' | 'ir-separator' | 'domain-header' | 'latency-header'>([
  ['Name\t\t\tOffset\t\tContents', 'regset-header'],
  ['B.D.F\tRoot_entry\t\t\t\tContext_entry\t\t\t\tPASID\tPASID_table_entry', 'translation-header'],
  ['B.D.F\tRoot_entry\t\t\t\tContext_entry', 'translation-header'],
  ['Index\t\tqw0\t\t\tqw1\t\t\tqw2\t\t\tqw3\t\t\tstatus', 'queue-header-wide'],
  ['Index\t\tqw0\t\t\tqw1\t\t\tstatus', 'queue-header'],
  [' Entry SrcID   DstID    Vct IRTE_high\t\tIRTE_low', 'ir-header'],
  [' Entry SrcID   PDA_high PDA_low  Vct IRTE_high\t\tIRTE_low', 'ir-posted-header'],
  ['Interrupt Remapping is not enabled', 'ir-not-enabled'],
  ['****', 'ir-separator'],
  // `%-17s\t%-18s\t%-18s\t%-18s\t%-18s\t%-s` since 2b437e804566 (6.7); `IOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE` before.
  [DOMAIN_HEADER, 'domain-header'],
  ['IOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE', 'domain-header'],
  [LATENCY_HEADER, 'latency-header'],
]);

/**
 * The same lines with any whitespace, for text whose tabs and padding were changed on the way (a terminal
 * copy, a mail): read, with a warning, since such a file is not what the kernel printed.
 */
export const LOOSE = {
  regsetTitle: /^IOMMU: (\S+) Register Base Address: (?:0x)?([0-9a-fA-F]{1,16})$/,
  regsetHeader: /^Name\s+Offset\s+Contents$/,
  regsetRow: /^([A-Z][A-Z0-9_]*)\s+0x([0-9a-fA-F]{1,4})\s+0x([0-9a-fA-F]{1,16})$/,
  translationTitle: /^IOMMU (\S+): Root Table Address: 0x([0-9a-fA-F]{1,16})$/,
  translationHeader: /^B\.D\.F\s+Root_entry\s+Context_entry(?:\s+PASID\s+PASID_table_entry)?$/,
  translationRow:
    /^([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\s+0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16})\s+0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16})(?:\s+(-?\d{1,7})()\s+0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16}):0x([0-9a-fA-F]{16}))?$/,
  disabled: /^DMA Remapping is not enabled on (\S+)$/,
  queueTitle: /^Invalidation queue on IOMMU: (\S+)$/,
  queueGeometry: /^Base: 0x([0-9a-fA-F]{1,16})\s+Head: (\d{1,20})\s+Tail: (\d{1,20})$/,
  queueHeader: /^Index\s+qw0\s+qw1(\s+qw2\s+qw3)?\s+status$/,
  queueRow: /^()(\d{1,5})\s+([0-9a-fA-F]{16})\s+([0-9a-fA-F]{16})(?:\s+([0-9a-fA-F]{16})\s+([0-9a-fA-F]{16}))?\s+([0-9a-fA-F]{1,16})$/,
  irTitle: /^(Remapped|Posted) Interrupt supported on IOMMU: (\S+)$/,
  irTable: /^IR table address:\s*(?:0x)?([0-9a-fA-F]{1,16})$/,
  irHeader: /^Entry\s+SrcID\s+(DstID|PDA_high\s+PDA_low)\s+Vct\s+IRTE_high\s+IRTE_low$/,
  irNotEnabled: /^Interrupt Remapping is not enabled$/,
  irRow: /^(\d{1,5})()\s+([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])\s+([0-9a-fA-F]{8})(?:\s+([0-9a-fA-F]{8}))?\s+([0-9a-fA-F]{2})\s+([0-9a-fA-F]{16})\s+([0-9a-fA-F]{16})$/,
  irSeparator: /^\*{4}$/,
  domainTitle: /^Device (\S+) (?:with pasid ([0-9a-fA-F]{1,8}) )?@0x([0-9a-fA-F]{1,16})$/,
  domainHeader: /^IOVA_PFN\s+PML5E\s+PML4E\s+PDPE\s+PDE\s+PTE$/,
  domainRow: /^0x([0-9a-fA-F]{1,13})\s*\|\s+0x([0-9a-fA-F]{16})\s+0x([0-9a-fA-F]{16})\s+0x([0-9a-fA-F]{16})(?:\s+0x([0-9a-fA-F]{16}))?(?:\s+0x([0-9a-fA-F]{16}))?$/,
  latencyHeader: /^<0\.1us\s+0\.1us-1us\s+1us-10us\s+10us-100us\s+100us-1ms\s+1ms-10ms\s+>=10ms\s+min\(us\)\s+max\(us\)\s+average\(us\)$/,
  latencyRow: /^(?:inv_iotlb|inv_devtlb|inv_iec|svm_prq)(?:\s+-?\d{1,20}){10}$/,
} as const;

/** `%-Ns`/`%-Nd` printed `text` then `pad`: whether the padding is what printf gives. */
export function padded(text: string, pad: string, width: number): boolean {
  return pad.length === Math.max(0, width - text.length);
}

/** `%Nd`: leading spaces then digits. */
export function rightAligned(pad: string, digits: string, width: number): boolean {
  return pad.length === Math.max(0, width - digits.length);
}
