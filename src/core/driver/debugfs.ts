import { formatPciAddress, pciFromRid } from '../pci';
import type { VtdUnit } from '../vtd/unit';
import { renderDomainTranslationStruct } from './debugfs-domain';
import { renderIrTranslationStruct } from './debugfs-ir';
import { renderPerfLatency } from './debugfs-perf';
import { type QueuePointers, type QueueStatus, renderInvalidationQueue } from './debugfs-queue';
import { type RegsetLayout, regsetLayoutFor, renderRegset } from './debugfs-regset';
import { renderTranslationStruct } from './debugfs-translation';
import type { IommuKernel } from './kernel';

/**
 * The VT-d driver's debugfs files (drivers/iommu/intel/debugfs.c), rendered from the model byte for byte:
 * what `cat /sys/kernel/debug/iommu/intel/<file>` prints on a machine in the same state. Like the kernel,
 * the renderer reads registers and table memory, plus the little driver state debugfs shows (which devices
 * and PASIDs have a directory, the invalidation queue's status words). src/readers/debugfs.ts parses these
 * files back into a machine; the two share the formats below.
 *
 * One module per file renders it and holds its formats: debugfs-regset.ts, debugfs-translation.ts,
 * debugfs-queue.ts, debugfs-ir.ts, debugfs-domain.ts, debugfs-perf.ts; this module names the files and
 * renders the whole directory, and re-exports the parts for the readers that parse them.
 */

export * from './debugfs-domain';
export * from './debugfs-ir';
export * from './debugfs-perf';
export * from './debugfs-queue';
export * from './debugfs-regset';
export * from './debugfs-translation';

export const DEBUGFS_ROOT = '/sys/kernel/debug/iommu/intel';

export const DebugfsFile = {
  regset: 'iommu_regset',
  translation: 'dmar_translation_struct',
  queue: 'invalidation_queue',
  interrupts: 'ir_translation_struct',
  domain: 'domain_translation_struct',
  latency: 'dmar_perf_latency',
} as const;

// ---------------------------------------------------------------------------------------------------------
// The whole directory
// ---------------------------------------------------------------------------------------------------------

/** What debugfs reads: the units, and the driver state it shows beside the hardware. */
export interface DebugfsView {
  readonly units: readonly { readonly unit: VtdUnit; readonly qiStatus?: QueueStatus; readonly qiPointers?: QueuePointers }[];
  /** Devices with a directory, and the PASIDs with a subdirectory (attached with `set_dev_pasid`, 6.7+). */
  readonly devices: readonly { readonly segment: number; readonly sid: number; readonly pasids: readonly number[] }[];
  /** The `iommu_regset` layout of the kernel shown (an imported dump's own); the newest by default. */
  readonly regsetLayout?: RegsetLayout;
}

export function kernelDebugfsView(kernel: IommuKernel): DebugfsView {
  return {
    regsetLayout: regsetLayoutFor(kernel.version),
    units: kernel.iommus.map((i) => ({ unit: i.unit, qiStatus: (index: number) => i.qi.status(index) })),
    devices: [...kernel.devices.values()]
      .sort((a, b) => a.key - b.key)
      .map((d) => ({ segment: d.segment, sid: d.sid, pasids: [...d.pasidDomains.keys()].sort((a, b) => a - b) })),
  };
}

/** Path of a device's (or device PASID's) domain file, relative to the debugfs root. */
export function domainFilePath(segment: number, sid: number, pasid?: number): string {
  const dev = formatPciAddress(pciFromRid(sid, segment));
  return pasid === undefined ? `${dev}/${DebugfsFile.domain}` : `${dev}/${pasid.toString(16)}/${DebugfsFile.domain}`;
}

/** Every file of the directory, by path relative to the debugfs root, as a kernel with per-device files (6.7+) shows them. */
export function renderDebugfs(view: DebugfsView, options: { regset?: RegsetLayout } = {}): Map<string, string> {
  const units = view.units.map((u) => u.unit);
  const files = new Map<string, string>();
  files.set(DebugfsFile.regset, renderRegset(units, options.regset ?? view.regsetLayout));
  files.set(DebugfsFile.translation, renderTranslationStruct(units));
  files.set(DebugfsFile.queue, renderInvalidationQueue(view.units));
  files.set(DebugfsFile.interrupts, renderIrTranslationStruct(units));
  files.set(DebugfsFile.latency, renderPerfLatency(units));
  for (const d of view.devices) {
    files.set(domainFilePath(d.segment, d.sid), renderDomainTranslationStruct(units, d.segment, d.sid, 0));
    for (const p of d.pasids) files.set(domainFilePath(d.segment, d.sid, p), renderDomainTranslationStruct(units, d.segment, d.sid, p));
  }
  return files;
}
