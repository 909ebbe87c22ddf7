import { pciRid, parsePciAddress } from '../core/pci';
import { agree, plural } from '../core/plural';
import { U64 } from '../core/u64';
import type { DebugfsDiagnostic, DebugfsInput, Location } from './debugfs';
import { hexWord } from './hex';
import { decodeLogText } from './log-decoder';
import type { LogEvent } from './log-event';

/**
 * What a kernel log of the same boot adds to a debugfs import. debugfs prints PASID entries but never the
 * PASID directory that points to their tables; CONFIG_DMAR_DEBUG's walk dump after a fault does
 * (`dmar_fault_dump_ptes()`, drivers/iommu/intel/iommu.c, 5.17+: `pasid dir entry: 0x%016llx`), so a dmesg
 * with such dumps tells where the PASID tables really are. The log is read by the log decoder
 * (src/readers/log-decoder.ts); this keeps what its walk-dump events say about PASID directories.
 */

/** One PASID directory entry a walk dump printed. */
export interface PasidDirEntryFact {
  /** The unit the dump names (`Dump dmar0 table entries for IOVA ...`). */
  readonly unit: string;
  /** The requester's RID; fault lines print no segment, the unit says which one. */
  readonly sid: number;
  /** The PASID the walk used: the request's, or 0 (IOMMU_NO_PASID) for a request without one, as the kernel does. */
  readonly pasid: number;
  /** The context entry's low word printed in the same dump (the PASID directory's address is in it). */
  readonly contextLo: U64 | undefined;
  /** The entry's physical address, when the log event gives it; otherwise the import computes it from the context entry. */
  readonly address: number | undefined;
  readonly value: U64;
  /** The event's line in the log (the fault line the dump follows). */
  readonly at: Location;
}

/**
 * The walk-dump keys this reads, from `LogEvent.details.walk` as src/readers/vtd-walk-dump.ts builds it: `iommu`, and
 * `steps`, each with `entry`; the context step (`entry: 'context'`) has `low`, the PASID directory step
 * (`entry: 'pasid-dir'`) has `value` and, when the log reader provides it, `address` (hex text).
 */
interface WalkDumpDetails {
  readonly iommu?: unknown;
  readonly steps?: readonly { readonly entry?: unknown; readonly low?: unknown; readonly value?: unknown; readonly address?: unknown }[];
}

const TWO_32 = 0x1_0000_0000;

function hexText(v: unknown): U64 | undefined {
  return typeof v === 'string' ? hexWord(v) : undefined;
}

/** The PASID directory entries of the walk dumps among `events` (from a log read as `file`). */
export function pasidDirEntriesOf(events: readonly LogEvent[], file: string): PasidDirEntryFact[] {
  const out: PasidDirEntryFact[] = [];
  for (const e of events) {
    const walk = e.details.walk as WalkDumpDetails | undefined;
    if (!walk || !Array.isArray(walk.steps) || e.device === null) continue;
    const dir = walk.steps.find((s) => s.entry === 'pasid-dir' && typeof s.value === 'string');
    const value = hexText(dir?.value);
    const addr = parsePciAddress(e.device);
    const unit = typeof walk.iommu === 'string' ? walk.iommu : e.iommu;
    if (!dir || !value || !addr || !unit) continue;
    const ctx = walk.steps.find((s) => s.entry === 'context' && typeof s.low === 'string');
    const address = hexText(dir.address);
    out.push({
      unit,
      sid: pciRid(addr),
      pasid: e.pasid ?? 0,
      contextLo: hexText(ctx?.low),
      address: address ? address.hi * TWO_32 + address.lo : undefined,
      value,
      at: { file, line: e.line },
    });
  }
  return out;
}

/** Decodes a kernel log and keeps its PASID directory entries, with a note when it has none. */
export function readPasidDirectories(log: DebugfsInput): { facts: PasidDirEntryFact[]; diagnostics: DebugfsDiagnostic[] } {
  const { events } = decodeLogText(log.text);
  const facts = pasidDirEntriesOf(events, log.path);
  const dumps = events.filter((e) => e.details.walk !== undefined).length;
  const diagnostics: DebugfsDiagnostic[] = [];
  if (facts.length === 0) {
    diagnostics.push({
      file: log.path,
      line: 0,
      severity: 'info',
      message:
        dumps === 0
          ? 'the log has no CONFIG_DMAR_DEBUG table dumps, so it tells nothing about PASID directories'
          : `the log's ${plural(dumps, 'table dump')} ${agree(dumps, 'shows', 'show')} no PASID directory entry (legacy mode, or the walk stopped before it)`,
    });
  }
  return { facts, diagnostics };
}
