/**
 * What the log readers produce: one `LogEvent` per recognised event, whatever printed it (a kernel, Xen,
 * QEMU's trace backend, ftrace). The first nine fields are the same for every vendor so that a fault-queue
 * view can list them side by side; everything vendor-specific goes into `details`.
 * docs/log-formats.md lists every kind and format id with the kernel versions that print it.
 */

export type Vendor = 'intel' | 'amd' | 'arm';

export type EventKind =
  /** A DMA request was blocked by translation (VT-d DMA fault, AMD IO_PAGE_FAULT, SMMU F_* translation faults). */
  | 'dma-fault'
  /** An interrupt request was blocked by interrupt remapping. */
  | 'interrupt-fault'
  /** A PCIe page request (PRI/PRQ/PPR), or the driver rejecting one. */
  | 'page-request'
  /** An invalidation or command queue reported an error or a timeout. */
  | 'invalidation-error'
  /** An IOMMU unit's capability registers, printed at boot. */
  | 'capability'
  /** A table entry that configures a device or stream is invalid (DTE, STE, CD) or the device is not attached. */
  | 'config-error'
  /** The IOMMU could not read its own tables or queues (bus abort), or reports an internal error. */
  | 'hardware-error'
  /** An event, fault or page-request queue overflowed: later records were lost. */
  | 'queue-overflow'
  /** The kernel dropped messages because of rate limiting (`N callbacks suppressed`). */
  | 'ratelimit'
  /** The driver found its own tables inconsistent (a page-table entry already set when it maps). */
  | 'driver-error'
  /** A table walk dump (CONFIG_DMAR_DEBUG, Xen print_vtd_entries) with no fault line before it. */
  | 'page-walk'
  /** A descriptor or command was submitted to an invalidation queue (traces). */
  | 'invalidation'
  /** A translation was looked up or cached (traces). */
  | 'translation'
  /** A mapping was added (traces). */
  | 'map'
  /** A mapping was removed (traces). */
  | 'unmap'
  /** A device or PASID was attached, detached or regrouped, or switched address space (traces). */
  | 'attach'
  /** A cache tag was assigned or released (intel_iommu cache_tag tracepoints). */
  | 'cache-tag'
  /** An interrupt was remapped or generated (QEMU traces). */
  | 'interrupt'
  /** A register was read or written (QEMU traces). */
  | 'register'
  /** Any other QEMU vtd_* trace event, kept with its name and text. */
  | 'trace';

export type Access = 'read' | 'write' | 'exec';

export interface Reason {
  /** The code as the hardware reports it: VT-d fault reason, AMD event type, SMMU event id, VT-d IQEI. */
  readonly code: number;
  /** The name the vendor's Linux driver gives the code. */
  readonly text: string;
}

export interface LogEvent {
  /** 1-based line where the event starts. */
  line: number;
  /** Last line the event used (the same as `line` for one-line events). */
  endLine: number;
  /** null only for what the IOMMU core prints for every vendor (`iommu:*` tracepoints, IOPF messages). */
  vendor: Vendor | null;
  kind: EventKind;
  /** Which printer and era produced the text, e.g. `vtd-dma-5.15`; see docs/log-formats.md. */
  format: string;
  /** PCI address `SSSS:BB:DD.F` (segment 0000 when the log omits it); null when the log names no PCI function. */
  device: string | null;
  /** null when the request had no PASID (NO_PASID, `ffffffff`) or the log does not say. */
  pasid: number | null;
  /** `0x` + lowercase hex without leading zeros, as `0x%llx` prints it. */
  address: string | null;
  access: Access | null;
  reason: Reason | null;
  /** The timestamp the log line carried (dmesg seconds, syslog date), as printed. */
  timestamp: string | null;
  /** The IOMMU unit: `dmar0`, `ivhd0`, `arm-smmu-v3.0.auto`, or an IOMMU's own PCI address. */
  iommu: string | null;
  /** Decoded vendor-specific fields (flags, descriptor words, table entries...). */
  details: Record<string, unknown>;
}

export function newEvent(line: number, vendor: Vendor | null, kind: EventKind, format: string): LogEvent {
  return {
    line,
    endLine: line,
    vendor,
    kind,
    format,
    device: null,
    pasid: null,
    address: null,
    access: null,
    reason: null,
    timestamp: null,
    iommu: null,
    details: {},
  };
}

/** Counters a decoder keeps so that nothing is dropped silently. */
export interface LogSummary {
  lines: number;
  events: number;
  /** Lines used by events, or recognised as context (fault status, boot information). */
  recognisedLines: number;
  unrecognisedLines: number;
  /** Unrecognised lines that mention an IOMMU (a DMAR/AMD-Vi/SMMU marker): formats this reader does not know. */
  unrecognisedIommuLines: number;
  /** The first few of those, so a user can report them. */
  unrecognisedSamples: { line: number; text: string }[];
  /** Recognised informational lines (boot messages) that produce no event. */
  informationalLines: number;
  /** Sum of the N in `N callbacks suppressed` lines of IOMMU functions. */
  suppressedMessages: number;
  /** Lines on which the decoder hit an internal error (a bug); such lines count as unrecognised. */
  internalErrors: number;
  byKind: Record<string, number>;
  byVendor: Record<string, number>;
  byFormat: Record<string, number>;
}
