import { type DebugfsView, type QueuePointers, type RegsetLayout, REGSET_LAYOUTS } from '../core/driver/debugfs';
import type { Machine } from '../core/hw/machine';
import { pciFromRid } from '../core/pci';
import type { VtdUnit } from '../core/vtd/unit';
import { type DebugfsDiagnostic, type DebugfsDump, type DebugfsInput, type Location, parseDebugfs } from './debugfs';
import { QueueImport } from './debugfs-import-queue';

/**
 * Loads a parsed debugfs dump into the hardware model: a Machine whose memory holds the real machine's root,
 * context, PASID and page tables at their real addresses, and whose units hold its registers. Walks then go
 * through the same code as simulated ones. What debugfs does not show is said, not invented silently:
 * PASID tables (debugfs prints entries, not where their tables are) get addresses above everything the dump
 * names unless a kernel log with CONFIG_DMAR_DEBUG dumps gives the real ones, a unit's PCI segment comes from
 * the device files that name it, and a unit without `iommu_regset` gets assumed capabilities; all are listed
 * as diagnostics.
 *
 * Nothing here throws on a dump's content: every problem is a diagnostic with the file and line it is about
 * (`DebugfsDiagnostic`: file, line, severity, message; `error` for what could not be loaded at all).
 *
 * The import runs in phases, each a class over the one before it: debugfs-import-state.ts (what they share),
 * debugfs-import-units.ts (units and registers), debugfs-import-tables.ts (root, context and PASID tables),
 * debugfs-import-pages.ts (page tables), debugfs-import-queue.ts (invalidation queue, interrupt remapping);
 * the Importer below runs them in order and adds the devices as endpoints.
 */

export interface ImportOptions {
  /** Host address width; by default 46 bits, or 52 when the dump names higher addresses. */
  readonly hostAddressWidth?: number;
  /**
   * The kernel log of the same boot (dmesg). Its CONFIG_DMAR_DEBUG table dumps print the PASID directory
   * entries debugfs does not, so the PASID tables they point to are placed at their real addresses.
   */
  readonly dmesg?: DebugfsInput;
}

/**
 * A unit's values that the report shows (UnitReport's field names). The dump need not hold them: a unit
 * without `iommu_regset` has no register base, version or capabilities in it; without
 * `dmar_translation_struct` nothing says its mode, whether it translates, or where its root table is.
 */
export type UnitValue = 'name' | 'segment' | 'regBase' | 'version' | 'cap' | 'ecap' | 'mode' | 'translationEnabled' | 'rootTable';

export interface ImportedUnit {
  readonly unit: VtdUnit;
  /** Whether CAP/ECAP and the register file came from `iommu_regset` (else they are assumed). */
  readonly registersKnown: boolean;
  /** Values the dump does not hold that the import chose (the model runs with them), each with why. */
  readonly assumed: Readonly<Partial<Record<UnitValue, string>>>;
  /** Values the dump does not hold and nothing in it implies (the model's are no fact), each with why. */
  readonly unknown: Readonly<Partial<Record<UnitValue, string>>>;
  /** The driver's per-slot status words, when the dump has the unit's invalidation queue. */
  readonly qiStatus: readonly number[] | undefined;
  /** The queue as its own file showed it (head and tail can differ from the registers, read at another time). */
  readonly queue: ImportedQueue | undefined;
}

export interface ImportedQueue extends QueuePointers {
  readonly base: number;
  /** log2 of the descriptor size: 5 (32 bytes) when the unit is scalable-mode capable (ECAP.SMTS), else 4. */
  readonly shift: 4 | 5;
  readonly at: Location;
}

export interface ImportedDevice {
  readonly device: string;
  readonly segment: number;
  readonly sid: number;
  readonly unit: string;
  /** PASIDs with their own `domain_translation_struct` (6.7+), and whether the device's own file was there. */
  readonly pasidFiles: number[];
  ridFile: boolean;
}

/** Where the import put a PASID table: from a kernel log's `pasid dir entry`, or at an address of its own. */
export interface PasidTablePlacement {
  readonly unit: string;
  readonly device: string;
  /** PASIDs dirIndex*64 .. dirIndex*64+63 live in the table. */
  readonly dirIndex: number;
  readonly dirEntryAddress: number;
  readonly table: number;
  /** The log line that gave the entry; undefined when the import chose the address. */
  readonly from: Location | undefined;
}

export interface DebugfsImport {
  readonly machine: Machine;
  readonly units: readonly ImportedUnit[];
  readonly devices: readonly ImportedDevice[];
  readonly dump: DebugfsDump;
  readonly diagnostics: readonly DebugfsDiagnostic[];
  readonly pasidTables: readonly PasidTablePlacement[];
  /** The debugfs view of the imported state, to render it again. */
  readonly view: DebugfsView;
}

/** Which `iommu_regset` layout the dump's register names are in (so that rendering the import again matches). */
function regsetLayoutOf(dump: DebugfsDump): RegsetLayout | undefined {
  const names = dump.regsets[0]?.registers.map((r) => r.name);
  if (!names || names.length === 0) return undefined;
  for (const [layout, l] of Object.entries(REGSET_LAYOUTS) as [RegsetLayout, (typeof REGSET_LAYOUTS)[RegsetLayout]][]) {
    const all = [...l.regs32, ...l.regs64];
    if (all.length === names.length && all.every((n, i) => n === names[i])) return layout;
  }
  return undefined;
}

class Importer extends QueueImport {
  /** The import as steps: it yields every few thousand rows so that an editor can stay responsive. */
  *steps(): Generator<void, DebugfsImport> {
    if (this.options.dmesg) this.guard(this.options.dmesg.path || 'the kernel log', () => this.readLog(this.options.dmesg!));
    this.guard('the units', () => this.createUnits());
    for (const t of this.dump.translations) this.guard(`the tables of ${t.unit}`, () => this.loadTranslation(t));
    this.reportPlacements();
    for (const d of this.dump.domains) {
      try {
        yield* this.loadDomain(d);
      } catch (e) {
        this.note('error', this.at, `internal error while loading a page table: ${e instanceof Error ? e.message : String(e)}; the rest of the dump is loaded without it`);
      }
    }
    for (const q of this.dump.queues) this.guard(`the invalidation queue of ${q.unit}`, () => this.loadQueue(q));
    this.guard('the interrupt remapping tables', () => this.loadInterrupts());
    this.guard('the devices', () => this.addEndpoints());
    return this.result();
  }

  private result(): DebugfsImport {
    const units = [...this.units.values()].map((u) => ({ unit: u.unit, registersKnown: u.registersKnown, assumed: u.assumed, unknown: u.unknown, qiStatus: u.qiStatus, queue: u.queue }));
    const devices = [...this.devices.values()].sort((a, b) => a.segment - b.segment || a.sid - b.sid);
    const regsetLayout = regsetLayoutOf(this.dump);
    return {
      machine: this.machine,
      units,
      devices,
      dump: this.dump,
      diagnostics: this.diagnostics,
      pasidTables: this.placements,
      view: {
        units: units.map((u) => ({
          unit: u.unit,
          qiStatus: u.qiStatus ? (i: number) => u.qiStatus![i] ?? 0 : undefined,
          qiPointers: u.queue ? { head: u.queue.head, tail: u.queue.tail } : undefined,
        })),
        devices: devices.map((d) => ({ segment: d.segment, sid: d.sid, pasids: d.pasidFiles.slice().sort((a, b) => a - b) })),
        ...(regsetLayout ? { regsetLayout } : {}),
      },
    };
  }

  /** Endpoints for every device with a context entry, with the PCIe features its context enables. */
  private addEndpoints(): void {
    for (const d of this.devices.values()) {
      const t = this.dump.translations.find((x) => x.unit === d.unit);
      const row = t?.rows.find((r) => ((r.bus << 8) | r.devfn) === d.sid);
      const lo = row?.context[1].lo ?? 0;
      const sm = row?.pasidEntry !== null && row !== undefined;
      const caps = sm ? { ...(lo & 4 ? { ats: {} } : {}), ...(lo & 16 ? { pri: {} } : {}), ...(lo & 8 ? { pasid: { width: 20 } } : {}) } : lo & 4 ? { ats: {} } : {};
      const unit = this.unitNamed(d.unit);
      if (unit.segment !== d.segment) continue; // a device the tables of two units name: reported when it was met
      const ep = this.machine.addEndpoint(pciFromRid(d.sid, d.segment), caps, unit);
      ep.atsEnabled = caps.ats !== undefined;
      ep.priEnabled = 'pri' in caps;
      ep.pasidEnabled = 'pasid' in caps;
    }
  }
}

/** Loads a parsed dump into a fresh machine. Never throws on the dump's content: problems become diagnostics. */
export function importDebugfs(dump: DebugfsDump, options: ImportOptions = {}): DebugfsImport {
  const steps = importDebugfsSteps(dump, options);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/** The same, as a generator that pauses every few thousand page-table rows (for progress and cancellation). */
export function importDebugfsSteps(dump: DebugfsDump, options: ImportOptions = {}): Generator<void, DebugfsImport> {
  return new Importer(dump, options).steps();
}

/** Parses and loads in one step: what the CLI and the extension call with the files they read. */
export function loadDebugfs(inputs: readonly DebugfsInput[], options: ImportOptions = {}): DebugfsImport {
  return importDebugfs(parseDebugfs(inputs), options);
}
