import { type DebugfsView, isRegister64, type QueuePointers, type RegsetLayout, REGSET_LAYOUTS } from '../core/driver/debugfs';
import { Machine } from '../core/hw/machine';
import { formatPciAddress, pciFromRid } from '../core/pci';
import { U64 } from '../core/u64';
import { capabilitiesOf } from '../core/vtd/cap';
import { GSTS, Reg } from '../core/vtd/registers';
import { contextEntryAddress, pasidDirEntryAddress, pasidEntryAddress, rootEntryAddress } from '../core/vtd/tables';
import type { VtdUnit } from '../core/vtd/unit';
import { type DebugfsDiagnostic, type DebugfsDump, type DebugfsInput, type DomainDump, type Location, parseDebugfs, type QueueDump, type TranslationDump } from './debugfs';
import { type PasidDirEntryFact, readPasidDirectories } from './debugfs-dmesg';

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

export interface ImportedUnit {
  readonly unit: VtdUnit;
  /** Whether CAP/ECAP and the register file came from `iommu_regset` (else they are assumed). */
  readonly registersKnown: boolean;
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

const TWO_32 = 0x1_0000_0000;
const GIB = 0x4000_0000;
const PAGES_PER_GIB = GIB / 4096;
const ROWS_PER_STEP = 4096;

function addrOf(v: U64): number {
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

/** The page table a translation row points a device (and PASID) to, as debugfs's domain file would name it. */
function rowPageTable(r: TranslationDump['rows'][number], pasid: number | undefined): number | undefined {
  if (!r.pasidEntry) return r.pasid === -1 && (pasid === undefined || pasid === 0) ? addrOf(r.context[1]) : undefined;
  if (r.pasid !== (pasid ?? 0)) return undefined;
  const [val0, , val2] = r.pasidEntry;
  const pgtt = (val0.lo >>> 6) & 7;
  return pgtt === 1 ? addrOf(val2) : pgtt === 2 || pgtt === 3 ? addrOf(val0) : undefined;
}

interface UnitState {
  unit: VtdUnit;
  registersKnown: boolean;
  qiStatus?: number[];
  queue?: ImportedQueue;
}

class Importer {
  readonly diagnostics: DebugfsDiagnostic[];
  readonly machine: Machine;
  private readonly units = new Map<string, UnitState>();
  private readonly devices = new Map<string, ImportedDevice>();
  /** Who wrote each 64-bit word, so that two rows that disagree are reported. */
  private readonly written = new Map<number, { hi: number; lo: number; at: Location }>();
  private readonly placements: PasidTablePlacement[] = [];
  /** The log's PASID directory entries by unit, RID and directory index. */
  private readonly dirFacts = new Map<string, PasidDirEntryFact>();
  private readonly usedFacts = new Set<PasidDirEntryFact>();
  /** Tables the import may still place in its free GiB. */
  private roomForTables = PAGES_PER_GIB;
  /** Where the import is, for a problem that escapes the checks (reported, never thrown). */
  private at: Location = { file: '', line: 0 };

  constructor(
    private readonly dump: DebugfsDump,
    private readonly options: ImportOptions,
  ) {
    this.diagnostics = [...dump.diagnostics];
    const named = namedAddresses(dump);
    const highest = named.reduce((a, b) => Math.max(a, b), 0);
    const haw = options.hostAddressWidth ?? (highest < 2 ** 46 ? 46 : 52);
    const base = freeGib(named, 2 ** haw);
    this.machine = new Machine({ hostAddressWidth: haw, tableBase: base });
    if (base === 0) this.roomForTables = 0;
  }

  private note(severity: DebugfsDiagnostic['severity'], at: Location, message: string): void {
    this.diagnostics.push({ file: at.file, line: at.line, severity, message });
  }

  /** Runs one part of the import; an exception there (a bug, not the dump's fault) becomes an error where it happened. */
  private guard(part: string, run: () => void): void {
    try {
      run();
    } catch (e) {
      this.note('error', this.at, `internal error while loading ${part}: ${e instanceof Error ? e.message : String(e)}; the rest of the dump is loaded without it`);
    }
  }

  /** Writes a 64-bit word the dump shows; a different value already there is a contradiction in the dump. */
  private put(addr: number, v: U64, at: Location, what: string | (() => string)): void {
    const before = this.written.get(addr);
    if (before && (before.hi !== v.hi || before.lo !== v.lo)) {
      const name = typeof what === 'string' ? what : what();
      this.note('warning', at, `${name} at 0x${addr.toString(16)} is ${v} here but ${new U64(before.hi, before.lo)} at ${before.at.file}:${before.at.line}; keeping the later value`);
    }
    this.written.set(addr, { hi: v.hi, lo: v.lo, at });
    this.machine.memory.write64(addr, v.hi, v.lo, 'debugfs');
  }

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
    const units = [...this.units.values()].map((u) => ({ unit: u.unit, registersKnown: u.registersKnown, qiStatus: u.qiStatus, queue: u.queue }));
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

  // ---- the kernel log ----

  private readLog(log: DebugfsInput): void {
    const { facts, diagnostics } = readPasidDirectories(log);
    this.diagnostics.push(...diagnostics);
    // The last dump of an entry is the newest: later faults see the tables as they are now.
    for (const f of facts) this.dirFacts.set(`${f.unit}|${f.sid}|${f.pasid >>> 6}`, f);
  }

  // ---- units and registers ----

  private unitNames(): string[] {
    const names: string[] = [];
    const add = (n: string) => names.includes(n) || names.push(n);
    for (const r of this.dump.regsets) add(r.unit);
    for (const t of this.dump.translations) add(t.unit);
    for (const d of this.dump.disabled) add(d.unit);
    for (const q of this.dump.queues) add(q.unit);
    for (const i of this.dump.interrupts) add(i.unit);
    return names;
  }

  /**
   * Which PCI segment each unit serves. Only the device files name a segment (`Device 0001:00:02.0 @0x...`);
   * a unit serves the segment of the devices whose page table its context or PASID entries point to.
   */
  private unitSegments(names: readonly string[]): Map<string, number> {
    const segments = new Map<string, { segment: number; at: Location }>();
    for (const d of this.dump.domains) {
      const tables = this.dump.translations.filter((t) => names.includes(t.unit));
      const rowsFor = (t: TranslationDump) => t.rows.filter((r) => ((r.bus << 8) | r.devfn) === d.sid);
      let candidates = tables.filter((t) => rowsFor(t).some((r) => rowPageTable(r, d.pasid) === d.pgd)).map((t) => t.unit);
      if (candidates.length === 0) candidates = tables.filter((t) => rowsFor(t).length > 0).map((t) => t.unit);
      // Without dmar_translation_struct a lone unit serves what the device files name.
      if (candidates.length === 0 && tables.length === 0 && names.length === 1) candidates = [names[0]!];
      if (candidates.length !== 1) continue;
      const unit = candidates[0]!;
      const known = segments.get(unit);
      if (known && known.segment !== d.segment) {
        this.note('warning', d.at, `${unit} serves devices of PCI segment ${known.segment} (${known.at.file}:${known.at.line}) and, by this file, of segment ${d.segment}; a unit serves one segment, keeping ${known.segment}`);
        continue;
      }
      if (!known) segments.set(unit, { segment: d.segment, at: d.at });
    }
    return new Map([...segments].map(([u, s]) => [u, s.segment]));
  }

  private createUnits(): void {
    const names = this.unitNames();
    if (names.length === 0 && this.dump.domains.length > 0) names.push('dmar0');
    const segments = this.unitSegments(names);
    names.forEach((name, index) => {
      const regset = this.dump.regsets.find((r) => r.unit === name);
      const reg = (n: string) => regset?.registers.find((r) => r.name === n)?.value;
      const cap = reg('CAP');
      const ecap = reg('ECAP');
      const ver = reg('VER');
      const translation = this.dump.translations.find((t) => t.unit === name);
      const queue = this.dump.queues.find((q) => q.unit === name);
      const scalable = translation ? translation.rows.some((r) => r.pasid >= 0) || queue?.wide === true : queue?.wide ?? true;
      const known = cap !== undefined && ecap !== undefined;
      const at = regset?.at ?? translation?.at ?? { file: '', line: 0 };
      this.at = at;
      if (!known) {
        this.note('info', at, `no CAP/ECAP for ${name} in the dump (iommu_regset): assuming a ${scalable ? 'scalable-mode' : 'legacy'} unit with 4- and 5-level tables, 2M/1G pages and 20-bit PASIDs`);
      }
      // No device file names the unit's segment when it has none: segment 0, as on most machines.
      const segment = segments.get(name) ?? 0;
      const assumed = capabilitiesOf({ scalableMode: scalable, agaws: [39, 48, 57], mgaw: 57, firstLevel5Level: true, interruptRemapping: this.dump.interrupts.some((i) => i.unit === name) });
      const unit = this.machine.addVtdUnit({
        name,
        segment,
        regBase: regset?.base ?? 0xfed9_0000 + index * 0x1000,
        cap: cap ?? assumed.cap,
        ecap: ecap ?? assumed.ecap,
        version: ver ? [(ver.lo >>> 4) & 0xf, ver.lo & 0xf] : undefined,
      });
      const values: { offset: number; value: U64 }[] = [];
      if (regset) {
        for (const r of regset.registers) values.push({ offset: r.offset, value: isRegister64(r.name) ? r.value : new U64(0, r.value.lo) });
      } else {
        // What a dump without the regset still implies: the root table in use, translation on, the queue.
        const disabled = this.dump.disabled.some((d) => d.unit === name);
        let gsts = 0;
        if (translation) {
          values.push({ offset: Reg.RTADDR, value: U64.fromNumber(translation.rootTable + (scalable ? 1 << 10 : 0)) });
          gsts |= (1 << GSTS.RTPS) | (disabled ? 0 : 1 << GSTS.TES);
        }
        if (queue) {
          const shift = queue.wide ? 5 : 4;
          values.push({ offset: Reg.IQA, value: U64.fromNumber(queue.base + (queue.wide ? 0x801 : 0)) });
          values.push({ offset: Reg.IQH, value: U64.fromNumber((queue.head % 256) * 2 ** shift) });
          values.push({ offset: Reg.IQT, value: U64.fromNumber((queue.tail % 256) * 2 ** shift) });
          gsts |= 1 << GSTS.QIES;
        }
        const ir = this.dump.interrupts.find((i) => i.unit === name && i.table !== undefined);
        if (ir) {
          values.push({ offset: Reg.IRTA, value: U64.fromNumber(ir.table! + 15) });
          if (ir.kind === 'remapped') gsts |= (1 << GSTS.IRES) | (1 << GSTS.IRTPS);
        }
        values.push({ offset: Reg.GSTS, value: U64.fromNumber(gsts >>> 0) });
      }
      unit.loadRegisterFile(values);
      this.checkRegisters(unit, translation?.rootTable, translation?.at, queue);
      this.units.set(name, { unit, registersKnown: known });
    });
  }

  private checkRegisters(unit: VtdUnit, rootTable: number | undefined, at: Location | undefined, queue: QueueDump | undefined): void {
    if (rootTable !== undefined && unit.rootTableAddress !== rootTable) {
      this.note('warning', at!, `${unit.name}: RTADDR says the root table is at 0x${unit.rootTableAddress.toString(16)}, dmar_translation_struct says 0x${rootTable.toString(16)}; walks use RTADDR`);
    }
    if (queue) {
      const q = unit.invalidationQueue;
      if (q.base !== queue.base) this.note('warning', queue.at, `${unit.name}: IQA says the queue is at 0x${q.base.toString(16)}, invalidation_queue says 0x${queue.base.toString(16)}`);
    }
  }

  private unitNamed(name: string): VtdUnit {
    return this.units.get(name)!.unit;
  }

  // ---- root, context and PASID tables ----

  private device(segment: number, sid: number, unit: string): ImportedDevice {
    const name = formatPciAddress(pciFromRid(sid, segment));
    let d = this.devices.get(name);
    if (!d) {
      d = { device: name, segment, sid, unit, pasidFiles: [], ridFile: false };
      this.devices.set(name, d);
    }
    return d;
  }

  private loadTranslation(t: TranslationDump): void {
    const unit = this.unitNamed(t.unit);
    const sm = t.rows.some((r) => r.pasid >= 0) || unit.scalableMode;
    for (const r of t.rows) {
      this.at = r.at;
      const sid = (r.bus << 8) | r.devfn;
      const dev = this.device(unit.segment, sid, t.unit);
      if (dev.unit !== t.unit) {
        this.note('warning', r.at, `${dev.device} is in the tables of ${dev.unit} and of ${t.unit}; no device file says which segments they serve, so both are taken as segment ${unit.segment} and the device is left to ${dev.unit}`);
      }
      const rootAt = rootEntryAddress(t.rootTable, r.bus);
      this.put(rootAt, r.root[1], r.at, 'root entry qw0');
      this.put(rootAt + 8, r.root[0], r.at, 'root entry qw1');
      const half = sm && r.devfn >= 0x80 ? r.root[0] : r.root[1];
      if ((half.lo & 1) === 0) {
        this.note('warning', r.at, `the root entry for bus ${r.bus.toString(16).padStart(2, '0')} is not present, yet the kernel printed a context entry under it`);
        continue;
      }
      const ctxAt = contextEntryAddress(addrOf(half), r.devfn, sm);
      this.put(ctxAt, r.context[1], r.at, 'context entry qw0');
      this.put(ctxAt + 8, r.context[0], r.at, 'context entry qw1');
      if (!r.pasidEntry) continue;
      const table = this.pasidTable(t.unit, dev, r);
      if (table === undefined) continue;
      const entryAt = pasidEntryAddress(table, r.pasid);
      r.pasidEntry.forEach((w, i) => this.put(entryAt + i * 8, w, r.at, `PASID ${r.pasid} entry qw${i}`));
      this.checkFirstLevelWidth(r.pasidEntry, r.pasid, dev.device, r.at);
    }
  }

  /**
   * The PASID table holding a row's entry. debugfs never prints the PASID directory: its entry comes from the
   * kernel log when a walk dump there printed it, else the import gives the table a page of its own.
   */
  private pasidTable(unitName: string, dev: ImportedDevice, r: TranslationDump['rows'][number]): number | undefined {
    const mem = this.machine.memory;
    const dir = addrOf(r.context[1]);
    const dirEntry = pasidDirEntryAddress(dir, r.pasid);
    const dirIndex = r.pasid >>> 6;
    if (mem.readLo(dirEntry) & 1) return addrOf(new U64(mem.readHi(dirEntry), mem.readLo(dirEntry)));
    const fact = this.dirFacts.get(`${unitName}|${dev.sid}|${dirIndex}`);
    if (fact && this.factFits(fact, r, dirEntry, dev.device)) {
      this.usedFacts.add(fact);
      this.put(dirEntry, fact.value, fact.at, 'PASID directory entry');
      const table = addrOf(fact.value);
      this.placements.push({ unit: unitName, device: dev.device, dirIndex, dirEntryAddress: dirEntry, table, from: fact.at });
      return table;
    }
    if (this.roomForTables === 0) {
      this.note('error', r.at, `no free memory left to place the PASID table of ${dev.device} PASID ${r.pasid}: the entry is not loaded`);
      return undefined;
    }
    this.roomForTables--;
    const table = mem.allocPage();
    mem.write64(dirEntry, Math.floor(table / TWO_32), (table >>> 0) | 1, 'debugfs pasid-dir-entry (placed by the import)');
    this.placements.push({ unit: unitName, device: dev.device, dirIndex, dirEntryAddress: dirEntry, table, from: undefined });
    return table;
  }

  /** Whether a log's directory entry belongs to the directory the dump shows (the log may be older than the dump). */
  private factFits(fact: PasidDirEntryFact, r: TranslationDump['rows'][number], dirEntry: number, device: string): boolean {
    const where = `${fact.at.file}:${fact.at.line}`;
    if (fact.contextLo && addrOf(fact.contextLo) !== addrOf(r.context[1])) {
      this.note('warning', fact.at, `the table dump at ${where} shows ${device}'s PASID directory at 0x${addrOf(fact.contextLo).toString(16)}, the debugfs dump at 0x${addrOf(r.context[1]).toString(16)} (${r.at.file}:${r.at.line}): the log is from another time, its PASID directory entry is not used`);
      return false;
    }
    if (fact.address !== undefined && fact.address !== dirEntry) {
      this.note('warning', fact.at, `the table dump at ${where} puts ${device}'s PASID directory entry at 0x${fact.address.toString(16)}, the context entry (${r.at.file}:${r.at.line}) at 0x${dirEntry.toString(16)}: not used`);
      return false;
    }
    if ((fact.value.lo & 1) === 0) {
      this.note('warning', fact.at, `the table dump at ${where} shows ${device}'s PASID directory entry not present, yet debugfs lists PASID ${r.pasid} (${r.at.file}:${r.at.line}): the log is older than the dump, its entry is not used`);
      return false;
    }
    return true;
  }

  /** Says where PASID tables went: from the log, or placed, since debugfs shows neither. */
  private reportPlacements(): void {
    const placed = this.placements.filter((p) => p.from === undefined);
    const fromLog = this.placements.length - placed.length;
    const at = this.dump.translations[0]?.at ?? { file: '', line: 0 };
    if (placed.length > 0) {
      const hint = this.options.dmesg ? ' (the kernel log has no walk dump for them)' : '; a dmesg with CONFIG_DMAR_DEBUG table dumps of these devices gives the real ones';
      this.note('info', at, `debugfs shows PASID entries but not the tables that hold them: ${placed.length} PASID table${placed.length > 1 ? 's were' : ' was'} placed at 0x${placed[0]!.table.toString(16)} and up${hint}; the entries are as dumped`);
    }
    if (fromLog > 0) this.note('info', at, `${fromLog} PASID table${fromLog > 1 ? 's are' : ' is'} at the address the kernel log's PASID directory entries give`);
    const unused = [...this.dirFacts.values()].filter((f) => !this.usedFacts.has(f));
    for (const f of unused) {
      this.note('info', f.at, `the PASID directory entry printed here (${f.unit} RID 0x${f.sid.toString(16)}, PASIDs 0x${((f.pasid >>> 6) * 64).toString(16)}-0x${((f.pasid >>> 6) * 64 + 63).toString(16)}) belongs to no PASID entry of the dump`);
    }
  }

  /**
   * debugfs walks every table AW + 2 levels deep, but a first-level table has the depth FLPM gives; Linux
   * writes the IOMMU's AW into first-level entries too, so where the two differ the kernel's dump of that
   * table is not the table, and walks through the import will not find its mappings.
   */
  private checkFirstLevelWidth(entry: readonly U64[], pasid: number, device: string, at: Location): void {
    const [val0, , val2] = entry;
    if (((val0!.lo >>> 6) & 7) !== 1) return;
    const aw = (val0!.lo >>> 2) & 7;
    const levels = ((val2!.lo >>> 2) & 3) === 1 ? 5 : 4;
    if (aw + 2 === levels) return;
    this.note('info', at, `${device} PASID ${pasid}: a ${levels}-level first-level table with AW ${aw}: the kernel dumps it as ${aw + 2} levels, so its domain_translation_struct does not show its mappings`);
  }

  // ---- page tables ----

  private unitForDevice(segment: number, sid: number): string | undefined {
    for (const d of this.devices.values()) if (d.segment === segment && d.sid === sid) return d.unit;
    for (const [name, u] of this.units) if (u.unit.segment === segment) return name;
    return undefined;
  }

  private *loadDomain(d: DomainDump): Generator<void> {
    this.at = d.at;
    const unitName = this.unitForDevice(d.segment, d.sid);
    if (unitName === undefined) {
      this.note('warning', d.at, `no unit of the dump serves PCI segment ${d.segment} (the tables name no device of it): ${formatPciAddress(pciFromRid(d.sid, d.segment))}'s page table is not loaded`);
      return;
    }
    const dev = this.device(d.segment, d.sid, unitName);
    const perPasid = /[\\/][0-9a-fA-F]{1,5}[\\/]domain_translation_struct$/.test(d.at.file);
    if (d.pasid === undefined || !perPasid) dev.ridFile = true;
    if (d.pasid !== undefined && perPasid) dev.pasidFiles.push(d.pasid);
    const inTables = this.dump.translations.some((t) => t.unit === unitName && t.rows.some((r) => ((r.bus << 8) | r.devfn) === d.sid));
    if (!inTables) {
      // dmar_translation_struct stops a bus at the first context-table half that is missing, so in scalable
      // mode devices 80-ff of a bus with no device 00-7f never appear there, though their tables exist.
      const why = (d.sid & 0x80) !== 0 && d.pasid !== undefined ? ' (the kernel does not list devices 80-ff of a bus whose devices 00-7f have no context table)' : '';
      this.note('warning', d.at, `${dev.device} has page tables here but no context entry in dmar_translation_struct${why}: the tables are loaded, but no request reaches them`);
    }
    // Consecutive rows share their upper entries; each entry is written (and checked) once per run.
    const lastAddr = [0, -1, -1, -1, -1, -1];
    const lastValue: (U64 | undefined)[] = [];
    let n = 0;
    for (const row of d.rows) {
      if (++n % ROWS_PER_STEP === 0) yield;
      this.at = row.at;
      let top = 5;
      while (top > 0 && row.path[top] === undefined) top--;
      if (top === 0) continue;
      let table = d.pgd;
      const iova = row.pfn * 4096;
      for (let level = top; level >= 1; level--) {
        const v = row.path[level];
        if (v === undefined) break;
        const at = table + (Math.floor(iova / 2 ** (12 + 9 * (level - 1))) % 512) * 8;
        const prev = lastValue[level];
        if (lastAddr[level] !== at || !prev || prev.hi !== v.hi || prev.lo !== v.lo) {
          this.put(at, v, row.at, () => `level-${level} entry for IOVA 0x${iova.toString(16)}`);
          lastAddr[level] = at;
          lastValue[level] = v;
        }
        table = addrOf(v);
      }
    }
  }

  // ---- invalidation queue ----

  /**
   * The queue as `invalidation_queue` shows it: slot i at base + (i << qi_shift), 32-byte descriptors when the
   * unit is scalable-mode capable (ECAP.SMTS), whatever mode it runs in; head and tail as the file printed them.
   */
  private loadQueue(q: QueueDump): void {
    const state = this.units.get(q.unit)!;
    this.at = q.at;
    const smts = state.registersKnown ? state.unit.ecap.smts === 1 : q.wide === true;
    if (q.wide !== undefined && q.wide !== smts) {
      this.note('warning', q.at, `${q.unit}: the queue rows have ${q.wide ? 4 : 2} descriptor words, but ECAP.SMTS is ${smts ? 1 : 0} (the kernel prints ${smts ? 4 : 2}); the descriptors are placed as ECAP says`);
    }
    const shift = smts ? 5 : 4;
    const status: number[] = new Array(256).fill(0);
    for (const r of q.rows) {
      this.at = r.at;
      if (r.index >= 256) {
        this.note('warning', r.at, `slot ${r.index} is beyond the 256 the driver allocates`);
        continue;
      }
      r.qwords.forEach((w, i) => this.put(q.base + r.index * 2 ** shift + i * 8, w, r.at, `invalidation descriptor ${r.index} qw${i}`));
      status[r.index] = r.status;
    }
    state.qiStatus = status;
    state.queue = { base: q.base, head: q.head, tail: q.tail, shift, at: q.at };
  }

  // ---- interrupt remapping ----

  private loadInterrupts(): void {
    for (const dump of this.dump.interrupts) {
      if (dump.table === undefined) continue;
      for (const e of dump.entries) {
        this.at = e.at;
        if (e.index >= 65536) {
          this.note('warning', e.at, `IRTE ${e.index} is beyond the 65536 the driver allocates`);
          continue;
        }
        this.put(dump.table + e.index * 16, e.low, e.at, `IRTE ${e.index} low`);
        this.put(dump.table + e.index * 16 + 8, e.high, e.at, `IRTE ${e.index} high`);
      }
    }
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
