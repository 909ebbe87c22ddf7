import { Machine } from '../core/hw/machine';
import { U64 } from '../core/u64';
import type { VtdUnit } from '../core/vtd/unit';
import type { DebugfsDiagnostic, DebugfsDump, Location } from './debugfs';
import type { ImportedDevice, ImportedQueue, ImportOptions, PasidTablePlacement, UnitValue } from './debugfs-import';
import type { PasidDirEntryFact } from './debugfs-dmesg';

// What the phases of the import share (debugfs-import.ts): the machine being filled, the diagnostics, every
// word written and where from, and what the phases found; each phase is a class over the one before it.

export const TWO_32 = 0x1_0000_0000;
const GIB = 0x4000_0000;
export const PAGES_PER_GIB = GIB / 4096;

export function addrOf(v: U64): number {
  return (v.hi & 0xf_ffff) * TWO_32 + ((v.lo & 0xffff_f000) >>> 0);
}

/** Every physical address the dump names, to place the tables debugfs does not show away from them. */
function namedAddresses(dump: DebugfsDump): number[] {
  const out: number[] = [];
  for (const t of dump.translations) {
    out.push(t.rootTable);
    for (const r of t.rows) {
      out.push(addrOf(r.root[0]), addrOf(r.root[1]), addrOf(r.context[1]));
      if (r.pasidEntry) for (const w of r.pasidEntry) out.push(addrOf(w));
    }
  }
  for (const d of dump.domains) {
    out.push(d.pgd);
    for (const r of d.rows) for (const v of r.path) if (v) out.push(addrOf(v));
  }
  for (const q of dump.queues) out.push(q.base, q.base + 0x1fff);
  for (const i of dump.interrupts) if (i.table !== undefined) out.push(i.table, i.table + 65536 * 16 - 1);
  for (const r of dump.regsets) for (const reg of r.registers) if (['RTADDR', 'IQA', 'IRTA', 'PQA'].includes(reg.name)) out.push(addrOf(reg.value));
  return out;
}

/**
 * A GiB of memory no address of the dump falls in, for the tables the import has to place: the first one
 * above them all when it exists, else the lowest free one (a dump that names addresses up to the top of the
 * 52-bit space, e.g. an entry of all ones, still leaves room lower down).
 */
function freeGib(named: readonly number[], limit: number): number {
  const used = new Set<number>();
  let top = 0;
  for (const a of named) {
    const g = Math.floor(a / GIB);
    used.add(g);
    top = Math.max(top, g);
  }
  if ((top + 2) * GIB <= limit) return (top + 1) * GIB;
  for (let g = 1; g * GIB + GIB <= limit; g++) if (!used.has(g)) return g * GIB;
  return 0;
}

export interface UnitState {
  unit: VtdUnit;
  registersKnown: boolean;
  assumed: Partial<Record<UnitValue, string>>;
  unknown: Partial<Record<UnitValue, string>>;
  qiStatus?: number[];
  queue?: ImportedQueue;
}

export class ImportState {
  readonly diagnostics: DebugfsDiagnostic[];
  readonly machine: Machine;
  protected readonly units = new Map<string, UnitState>();
  protected readonly devices = new Map<string, ImportedDevice>();
  /** Who wrote each 64-bit word, so that two rows that disagree are reported. */
  protected readonly written = new Map<number, { hi: number; lo: number; at: Location }>();
  protected readonly placements: PasidTablePlacement[] = [];
  /** The log's PASID directory entries by unit, RID and directory index. */
  protected readonly dirFacts = new Map<string, PasidDirEntryFact>();
  protected readonly usedFacts = new Set<PasidDirEntryFact>();
  /** Tables the import may still place in its free GiB. */
  protected roomForTables = PAGES_PER_GIB;
  /** Where the import is, for a problem that escapes the checks (reported, never thrown). */
  protected at: Location = { file: '', line: 0 };

  constructor(
    protected readonly dump: DebugfsDump,
    protected readonly options: ImportOptions,
  ) {
    this.diagnostics = [...dump.diagnostics];
    const named = namedAddresses(dump);
    const highest = named.reduce((a, b) => Math.max(a, b), 0);
    const haw = options.hostAddressWidth ?? (highest < 2 ** 46 ? 46 : 52);
    const base = freeGib(named, 2 ** haw);
    this.machine = new Machine({ hostAddressWidth: haw, tableBase: base });
    if (base === 0) this.roomForTables = 0;
  }

  protected note(severity: DebugfsDiagnostic['severity'], at: Location, message: string): void {
    this.diagnostics.push({ file: at.file, line: at.line, severity, message });
  }

  /** Runs one part of the import; an exception there (a bug, not the dump's fault) becomes an error where it happened. */
  protected guard(part: string, run: () => void): void {
    try {
      run();
    } catch (e) {
      this.note('error', this.at, `internal error while loading ${part}: ${e instanceof Error ? e.message : String(e)}; the rest of the dump is loaded without it`);
    }
  }

  /** Writes a 64-bit word the dump shows; a different value already there is a contradiction in the dump. */
  protected put(addr: number, v: U64, at: Location, what: string | (() => string)): void {
    const before = this.written.get(addr);
    if (before && (before.hi !== v.hi || before.lo !== v.lo)) {
      const name = typeof what === 'string' ? what : what();
      this.note('warning', at, `${name} at 0x${addr.toString(16)} is ${v} here but ${new U64(before.hi, before.lo)} at ${before.at.file}:${before.at.line}; keeping the later value`);
    }
    this.written.set(addr, { hi: v.hi, lo: v.lo, at });
    this.machine.memory.write64(addr, v.hi, v.lo, 'debugfs');
  }
}
