/**
 * Substrings at least one of which every line that starts or is an IOMMU event contains, so that a
 * caller can skip the other lines of a large log without decoding them:
 * - `DMAR`: every VT-d kernel message (pr_fmt `DMAR: `) and Xen's `[VT-D]DMAR:` lines; `dmar: `: the
 *   pr_fmt of Linux up to 4.1, whose messages need not say DMAR (`dmar: VT-d detected invalid descriptor`);
 * - `VT-D`, `INTR-REMAP`: Xen's interrupt-remapping and unknown-type faults, and the old kernel
 *   `INTR-REMAP:` form;
 * - `IOMMU`: VT-d page-request messages (`IOMMU: dmarN: ...`) and the generic `iommu:*` tracepoints;
 * - `Inval`: `dmarN: Invalid page request` printed on its own;
 * - `PASID`: the page-request messages of Linux 4.4-5.13 (`dmarN: Page request without PASID: ...`);
 * - `Unexpected page request`, `Execution request`: the two page-request messages of Linux 5.13 (and the
 *   5.10.y, 5.12.y backports), which svm.c prints with no prefix and no unit name;
 * - `AMD-Vi`: every AMD message but the dev_err lines of the kernels between 1a21ee1aabf7 and dev_fmt, which
 *   print `<driver> <device>: Event logged [...]`: `Event logged [` catches those; `-smmu`: every message of the `arm-smmu-v3` device; `SMMUv3`: every
 *   message of Xen's SMMUv3 driver (`SMMUv3: /smmu@...: `);
 * - `iopf with`: the IOMMU core's `<driver> <device>: iopf with pasid %d aborted`;
 * - `callbacks suppressed`: rate limiting, whose line names only the function;
 * - `iommu`: the IOMMU core's lines (`iommu: Default domain type: ...`, `... Adding to iommu group N`) and
 *   the kernel command line's IOMMU parameters, which the VT-d reader counts as informational.
 * In QEMU output also `vtd_` (trace events, error reports) and `is not recorded`, `is not generated` (the
 * error reports of its fault-recording path, which name no function: `New fault is not recorded due to
 * compression of faults`, `Interrupt Mask set, irq is not generated`, ...); in trace text (ftrace, trace-cmd, perf) also
 * `dmar` (the intel_iommu tracepoints name their unit and nothing else a marker catches); in a Xen
 * console also `(XEN)` (Xen's AMD-Vi driver prints its non-page-fault events as a bare name and four
 * words, `ILLEGAL_DEV_TABLE_ENTRY 000000a0 ...`).
 *
 * A caller may skip other lines, as long as it feeds every line while the decoder says `wantsNextLine`
 * (continuations of multi-line events often carry no marker). Skipped lines count as unrecognised,
 * exactly as if they had been fed.
 */
/** The markers that name an IOMMU: an unrecognised line with one is a format this reader does not know. */
const IOMMU_MARKERS: readonly string[] = ['DMAR', 'VT-D', 'INTR-REMAP', 'IOMMU', 'AMD-Vi', '-smmu', 'SMMUv3'];
export const LOG_MARKERS: readonly string[] = [...IOMMU_MARKERS, 'dmar: ', 'Inval', 'PASID', 'Unexpected page request', 'Execution request', 'Event logged [', 'iopf with', 'callbacks suppressed', 'iommu'];
export const QEMU_MARKERS: readonly string[] = [...LOG_MARKERS, 'vtd_', 'is not recorded', 'is not generated'];
export const TRACE_MARKERS: readonly string[] = [...LOG_MARKERS, 'dmar'];
export const XEN_MARKERS: readonly string[] = [...LOG_MARKERS, '(XEN)'];
const QEMU_XEN_MARKERS: readonly string[] = [...QEMU_MARKERS, '(XEN)'];
const TRACE_XEN_MARKERS: readonly string[] = [...TRACE_MARKERS, '(XEN)'];
/**
 * The markers of every format: what a caller skips lines by when a later part of its input may be in
 * another format than the start (`cat kern.log qemu.trace`), while the decoder keeps `markersFor` of the
 * start. Skipping fewer lines than the decoder's markers allow changes nothing.
 */
export const ALL_MARKERS: readonly string[] = [...LOG_MARKERS, 'vtd_', 'is not recorded', 'is not generated', 'dmar', '(XEN)'];

const TRACE_START = /^(?:# tracer:|cpus=\d|version = \d|\s*\S{1,64}-\d{1,8}\s+(?:\(\s*[\d-]{1,8}\)\s+)?\[\d{1,4}\]\s)/m;
const QEMU_START = /vtd_|qemu-system|QEMU/;

/** The markers for an input that starts with `start` (its first tens of kilobytes). */
export function markersFor(start: string): readonly string[] {
  const xen = start.indexOf('(XEN)') !== -1;
  if (TRACE_START.test(start)) return xen ? TRACE_XEN_MARKERS : TRACE_MARKERS;
  if (QEMU_START.test(start)) return xen ? QEMU_XEN_MARKERS : QEMU_MARKERS;
  return xen ? XEN_MARKERS : LOG_MARKERS;
}

/**
 * The part of a marker worth searching raw bytes for. Native searches stop at every occurrence of the
 * first byte (memchr), so a key starts at a byte that is rare in ordinary log text; it is a substring of
 * its marker, so every line with the marker has the key. Measured with bench/decode-log.bench.ts: the
 * full markers cost about twice as much.
 */
export const SEARCH_KEYS: Readonly<Record<string, string>> = {
  DMAR: 'MAR',
  'VT-D': 'VT-D',
  'INTR-REMAP': 'R-RE',
  IOMMU: 'OMMU',
  Inval: 'Inval',
  PASID: 'ASID',
  'dmar: ': 'mar: ',
  'Unexpected page request': 'xpected page',
  'Execution request': 'xecution req',
  'Event logged [': 'vent logged [',
  'iopf with': 'iopf w',
  'AMD-Vi': 'MD-Vi',
  '-smmu': '-smmu',
  SMMUv3: 'MMUv3',
  '(XEN)': 'XEN)',
  'callbacks suppressed': 'ks supp',
  iommu: 'ommu',
  vtd_: 'vtd_',
  'is not recorded': 'not rec',
  'is not generated': 'not gen',
  dmar: 'dmar',
};

/** Whether a line holds one of `markers` (LOG_MARKERS, which every marker set holds, by default). */
export function hasMarker(line: string, markers: readonly string[] = LOG_MARKERS): boolean {
  for (let i = 0; i < markers.length; i++) if (line.indexOf(markers[i]!) !== -1) return true;
  return false;
}

export function namesIommu(line: string): boolean {
  for (let i = 0; i < IOMMU_MARKERS.length; i++) if (line.indexOf(IOMMU_MARKERS[i]!) !== -1) return true;
  return false;
}
