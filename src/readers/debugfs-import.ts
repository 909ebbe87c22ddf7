import { type DebugfsView, isRegister64 } from '../core/driver/debugfs';
import { Machine } from '../core/hw/machine';
import { formatPciAddress, pciFromRid } from '../core/pci';
import { U64 } from '../core/u64';
import { capabilitiesOf } from '../core/vtd/cap';
import { GSTS, Reg } from '../core/vtd/registers';
import { contextEntryAddress, pasidDirEntryAddress, pasidEntryAddress, rootEntryAddress } from '../core/vtd/tables';
import type { VtdUnit } from '../core/vtd/unit';
import { type DebugfsDiagnostic, type DebugfsDump, type DebugfsInput, type DomainDump, type Location, parseDebugfs, type QueueDump } from './debugfs';

/**
 * Loads a parsed debugfs dump into the hardware model: a Machine whose memory holds the real machine's root,
 * context, PASID and page tables at their real addresses, and whose units hold its registers. Walks then go
 * through the same code as simulated ones. What debugfs does not show is said, not invented silently:
 * PASID tables (debugfs prints entries, not where their tables are) get addresses above everything the dump
 * names, and a unit without `iommu_regset` gets assumed capabilities; both are listed as diagnostics.
 */

export interface ImportOptions {
  /** Host address width; by default 46 bits, or 52 when the dump names higher addresses. */
  readonly hostAddressWidth?: number;
}

export interface ImportedUnit {
  readonly unit: VtdUnit;
  /** Whether CAP/ECAP and the register file came from `iommu_regset` (else they are assumed). */
  readonly registersKnown: boolean;
  /** The driver's per-slot status words, when the dump has the unit's invalidation queue. */
  readonly qiStatus: readonly number[] | undefined;
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

export interface DebugfsImport {
  readonly machine: Machine;
  readonly units: readonly ImportedUnit[];
  readonly devices: readonly ImportedDevice[];
  readonly dump: DebugfsDump;
  readonly diagnostics: readonly DebugfsDiagnostic[];
  /** The debugfs view of the imported state, to render it again. */
  readonly view: DebugfsView;
}

const TWO_32 = 0x1_0000_0000;
const GIB = 0x4000_0000;

function addrOf(v: U64): number {
  return (v.hi & 0xf_ffff) * TWO_32 + ((v.lo & 0xffff_f000) >>> 0);
}

/** Every physical address the dump names, to place the tables debugfs does not show above them. */
function highestAddress(dump: DebugfsDump): number {
  let max = 0;
  const see = (a: number) => (max = Math.max(max, a));
  for (const t of dump.translations) {
    see(t.rootTable);
    for (const r of t.rows) {
      see(addrOf(r.root[0]));
      see(addrOf(r.root[1]));
      see(addrOf(r.context[1]));
      if (r.pasidEntry) for (const w of r.pasidEntry) see(addrOf(w));
    }
  }
  for (const d of dump.domains) {
    see(d.pgd);
    for (const r of d.rows) for (const v of r.path) if (v) see(addrOf(v));
  }
  for (const q of dump.queues) see(q.base + 0x2000);
  for (const i of dump.interrupts) if (i.table !== undefined) see(i.table + 65536 * 16);
  for (const r of dump.regsets) for (const reg of r.registers) if (['RTADDR', 'IQA', 'IRTA', 'PQA'].includes(reg.name)) see(addrOf(reg.value));
  return max;
}

class Importer {
  readonly diagnostics: DebugfsDiagnostic[];
  readonly machine: Machine;
  private readonly units = new Map<string, { unit: VtdUnit; registersKnown: boolean; qiStatus?: number[] }>();
  private readonly devices = new Map<string, ImportedDevice>();
  /** Who wrote each 64-bit word, so that two rows that disagree are reported. */
  private readonly written = new Map<number, { hi: number; lo: number; at: Location }>();
  private placedTables = 0;
  private firstPlaced = 0;

  constructor(
    private readonly dump: DebugfsDump,
    options: ImportOptions,
  ) {
    this.diagnostics = [...dump.diagnostics];
    const highest = highestAddress(dump);
    const synthetic = Math.ceil((highest + 1) / GIB) * GIB;
    const haw = options.hostAddressWidth ?? (synthetic + GIB <= 2 ** 46 ? 46 : 52);
    this.machine = new Machine({ hostAddressWidth: haw, tableBase: synthetic });
  }

  private note(severity: DebugfsDiagnostic['severity'], at: Location, message: string): void {
    this.diagnostics.push({ file: at.file, line: at.line, severity, message });
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
    this.createUnits();
    for (const t of this.dump.translations) this.loadTranslation(t);
    if (this.placedTables > 0) {
      this.note('info', this.dump.translations[0]!.at, `debugfs shows PASID entries but not the tables that hold them: ${this.placedTables} PASID table${this.placedTables > 1 ? 's were' : ' was'} placed at 0x${this.firstPlaced.toString(16)} and up; the entries are as dumped`);
    }
    for (const d of this.dump.domains) yield* this.loadDomain(d);
    for (const q of this.dump.queues) this.loadQueue(q);
    this.loadInterrupts();
    this.addEndpoints();
    const units = [...this.units.values()].map((u) => ({ unit: u.unit, registersKnown: u.registersKnown, qiStatus: u.qiStatus }));
    const devices = [...this.devices.values()].sort((a, b) => a.segment - b.segment || a.sid - b.sid);
    return {
      machine: this.machine,
      units,
      devices,
      dump: this.dump,
      diagnostics: this.diagnostics,
      view: {
        units: units.map((u) => ({ unit: u.unit, qiStatus: u.qiStatus ? (i: number) => u.qiStatus![i] ?? 0 : undefined })),
        devices: devices.map((d) => ({ segment: d.segment, sid: d.sid, pasids: d.pasidFiles.slice().sort((a, b) => a - b) })),
      },
    };
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

  private createUnits(): void {
    const names = this.unitNames();
    if (names.length === 0 && this.dump.domains.length > 0) names.push('dmar0');
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
      if (!known) {
        this.note('info', at, `no CAP/ECAP for ${name} in the dump (iommu_regset): assuming a ${scalable ? 'scalable-mode' : 'legacy'} unit with 4- and 5-level tables, 2M/1G pages and 20-bit PASIDs`);
      }
      const assumed = capabilitiesOf({ scalableMode: scalable, agaws: [39, 48, 57], mgaw: 57, firstLevel5Level: true, interruptRemapping: this.dump.interrupts.some((i) => i.unit === name) });
      const unit = this.machine.addVtdUnit({
        name,
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
          const size = queue.wide ? 32 : 16;
          values.push({ offset: Reg.IQA, value: U64.fromNumber(queue.base + (queue.wide ? 0x801 : 0)) });
          values.push({ offset: Reg.IQH, value: U64.fromNumber(queue.head * size) });
          values.push({ offset: Reg.IQT, value: U64.fromNumber(queue.tail * size) });
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

  private loadTranslation(t: DebugfsDump['translations'][number]): void {
    const unit = this.unitNamed(t.unit);
    const sm = t.rows.some((r) => r.pasid >= 0) || unit.scalableMode;
    const mem = this.machine.memory;
    for (const r of t.rows) {
      const sid = (r.bus << 8) | r.devfn;
      this.device(unit.segment, sid, t.unit);
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
      const dir = addrOf(r.context[1]);
      const dirEntry = pasidDirEntryAddress(dir, r.pasid);
      let table: number;
      if (mem.readLo(dirEntry) & 1) {
        table = addrOf(new U64(mem.readHi(dirEntry), mem.readLo(dirEntry)));
      } else {
        // debugfs prints PASID entries but not the tables that hold them: give the table a page of its own.
        table = mem.allocPage();
        if (this.placedTables++ === 0) this.firstPlaced = table;
        mem.write64(dirEntry, Math.floor(table / TWO_32), (table >>> 0) | 1, 'debugfs pasid-dir-entry (placed by the import)');
      }
      const entryAt = pasidEntryAddress(table, r.pasid);
      r.pasidEntry.forEach((w, i) => this.put(entryAt + i * 8, w, r.at, `PASID ${r.pasid} entry qw${i}`));
      this.checkFirstLevelWidth(r.pasidEntry, r.pasid, sid, r.at);
    }
  }

  /**
   * debugfs walks every table AW + 2 levels deep, but a first-level table has the depth FLPM gives; Linux
   * writes the IOMMU's AW into first-level entries too, so where the two differ the kernel's dump of that
   * table is not the table, and walks through the import will not find its mappings.
   */
  private checkFirstLevelWidth(entry: readonly U64[], pasid: number, sid: number, at: Location): void {
    const [val0, , val2] = entry;
    if (((val0!.lo >>> 6) & 7) !== 1) return;
    const aw = (val0!.lo >>> 2) & 7;
    const levels = ((val2!.lo >>> 2) & 3) === 1 ? 5 : 4;
    if (aw + 2 === levels) return;
    const dev = formatPciAddress(pciFromRid(sid));
    this.note('info', at, `${dev} PASID ${pasid}: a ${levels}-level first-level table with AW ${aw}: the kernel dumps it as ${aw + 2} levels, so its domain_translation_struct does not show its mappings`);
  }

  // ---- page tables ----

  private unitForDevice(segment: number, sid: number): string | undefined {
    for (const d of this.devices.values()) if (d.segment === segment && d.sid === sid) return d.unit;
    return undefined;
  }

  private *loadDomain(d: DomainDump): Generator<void> {
    const unitName = this.unitForDevice(d.segment, d.sid) ?? [...this.units.keys()][0]!;
    const dev = this.device(d.segment, d.sid, unitName);
    if (d.pasid === undefined || /[\\/][0-9a-fA-F]{1,5}[\\/]domain_translation_struct$/.test(d.at.file) === false) dev.ridFile = true;
    if (d.pasid !== undefined && /[\\/][0-9a-fA-F]{1,5}[\\/]domain_translation_struct$/.test(d.at.file)) dev.pasidFiles.push(d.pasid);
    if (!this.dump.translations.some((t) => t.rows.some((r) => ((r.bus << 8) | r.devfn) === d.sid))) {
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

  private loadQueue(q: QueueDump): void {
    const unit = this.units.get(q.unit)!;
    const size = q.wide ? 32 : 16;
    const status: number[] = new Array(256).fill(0);
    for (const r of q.rows) {
      if (r.index >= 256) {
        this.note('warning', r.at, `slot ${r.index} is beyond the 256 the driver allocates`);
        continue;
      }
      r.qwords.forEach((w, i) => this.put(q.base + r.index * size + i * 8, w, r.at, `invalidation descriptor ${r.index} qw${i}`));
      status[r.index] = r.status;
    }
    unit.qiStatus = status;
  }

  // ---- interrupt remapping ----

  private loadInterrupts(): void {
    for (const dump of this.dump.interrupts) {
      if (dump.table === undefined) continue;
      for (const e of dump.entries) {
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
      const ep = this.machine.addEndpoint(pciFromRid(d.sid, d.segment), caps, d.unit);
      ep.atsEnabled = caps.ats !== undefined;
      ep.priEnabled = 'pri' in caps;
      ep.pasidEnabled = 'pasid' in caps;
    }
  }
}

const ROWS_PER_STEP = 4096;

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
