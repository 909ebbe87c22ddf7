// Builds VT-d setups by writing structures directly, as low-level software would: the hardware tests use
// it so that they do not depend on the driver model.
import { Machine } from '../../src/core/hw/machine';
import type { EndpointCapabilities } from '../../src/core/hw/endpoint';
import type { VtdFeatures } from '../../src/core/vtd/cap';
import { IoPageTable, type PageTableFormat } from '../../src/core/vtd/page-table';
import { DescType } from '../../src/core/vtd/descriptors';
import {
  enableInterruptRemapping,
  enableQueuedInvalidation,
  enablePageRequests,
  enableTranslation,
  encodeIrte,
  encodePostedIrte,
  type IrteFields,
  type PostedIrteFields,
  setCompatibilityFormatInterrupts,
  setInterruptRemapTable,
  submitDescriptors,
  writeIrte,
  setRootTable,
  writeLegacyContext,
  writeLegacyRootEntry,
  writePasidDirEntry,
  writePasidEntry,
  writeScalableContext,
  writeScalableRootEntry,
  type PasidEntryFields,
} from '../../src/core/vtd/tables';
import type { VtdUnit } from '../../src/core/vtd/unit';
import { vtdUnits } from '../../src/core/vtd/factory';

export interface Rig {
  machine: Machine;
  unit: VtdUnit;
  rootTable: number;
  /** Context table per bus (scalable: lower half). */
  contextTables: Map<number, number>;
  pasidDirs: Map<number, number>;
  pasidTables: Map<string, number>;
}

export function rig(options: { scalable?: boolean; features?: VtdFeatures; caching?: boolean; hostAddressWidth?: number; iotlbEntries?: number } = {}): Rig {
  const machine = new Machine({ hostAddressWidth: options.hostAddressWidth ?? 46 });
  const scalable = options.scalable ?? true;
  const unit = machine.addUnit(vtdUnits, { name: 'dmar0', features: { scalableMode: scalable, ...options.features }, caching: options.caching ?? true, iotlbEntries: options.iotlbEntries });
  const rootTable = machine.memory.allocPage();
  setRootTable(unit, rootTable, scalable);
  enableQueuedInvalidation(unit, machine.memory.allocPage());
  if (scalable) enablePageRequests(unit, machine.memory.allocPage());
  enableTranslation(unit);
  return { machine, unit, rootTable, contextTables: new Map(), pasidDirs: new Map(), pasidTables: new Map() };
}

export function device(r: Rig, bdf: string, caps: EndpointCapabilities = {}) {
  return r.machine.addEndpoint(bdf, caps, r.unit);
}

function contextTable(r: Rig, bus: number): number {
  let t = r.contextTables.get(bus);
  if (t === undefined) {
    t = r.machine.memory.allocPage();
    r.contextTables.set(bus, t);
    if (r.unit.scalableMode) writeScalableRootEntry(r.machine.memory, r.rootTable, bus, t, undefined);
    else writeLegacyRootEntry(r.machine.memory, r.rootTable, bus, t);
  }
  return t;
}

/** Scalable-mode context for `sid` with a PASID directory; returns the directory address. */
export function smContext(r: Rig, sid: number, opts: { dte?: boolean; pasidEnable?: boolean; pre?: boolean; fpd?: boolean; ridPasid?: number; pdts?: number } = {}): number {
  const mem = r.machine.memory;
  let dir = r.pasidDirs.get(sid);
  if (dir === undefined) {
    dir = mem.allocPage();
    r.pasidDirs.set(sid, dir);
  }
  writeScalableContext(mem, contextTable(r, sid >> 8), sid & 0xff, {
    pdts: opts.pdts ?? 7,
    pasidDir: dir,
    dte: opts.dte ?? false,
    pasidEnable: opts.pasidEnable ?? true,
    pre: opts.pre ?? false,
    fpd: opts.fpd ?? false,
    ridPasid: opts.ridPasid ?? 0,
  });
  return dir;
}

export function pasidEntry(r: Rig, sid: number, pasid: number, fields: PasidEntryFields): void {
  const mem = r.machine.memory;
  const dir = r.pasidDirs.get(sid)!;
  const key = `${sid}:${Math.floor(pasid / 64)}`;
  let table = r.pasidTables.get(key);
  if (table === undefined) {
    table = mem.allocPage();
    r.pasidTables.set(key, table);
    writePasidDirEntry(mem, dir, pasid, table);
  }
  // Snooped page walks, as Linux sets them on units with ECAP.SMPWC: without PWSNP, A/D updates fault.
  writePasidEntry(mem, table, pasid, { pwsnp: true, ...fields });
}

export function legacyContext(r: Rig, sid: number, fields: Parameters<typeof writeLegacyContext>[3]): void {
  writeLegacyContext(r.machine.memory, contextTable(r, sid >> 8), sid & 0xff, fields);
}

export function pageTable(r: Rig, format: PageTableFormat, levels = 4): IoPageTable {
  return new IoPageTable(r.machine.memory, { format, levels, large2M: true, large1G: true });
}

// ---- interrupt remapping ----

/**
 * An interrupt-remapping table of 2^(size+1) entries (IRTA.S = size) on the rig's unit: IRTA and SIRTP, then
 * IRE unless `enable` is false, CFI when asked. Returns the table address.
 */
export function irTable(r: Rig, o: { size?: number; eime?: boolean; cfi?: boolean; enable?: boolean; table?: number } = {}): number {
  const size = o.size ?? 7;
  const pages = Math.max(1, (2 ** (size + 1) * 16) / 4096);
  const table = o.table ?? r.machine.memory.allocContiguous(pages);
  setInterruptRemapTable(r.unit, table, size, o.eime ?? false);
  if (o.cfi) setCompatibilityFormatInterrupts(r.unit, true);
  if (o.enable ?? true) enableInterruptRemapping(r.unit);
  return table;
}

/** Writes a remapped-format IRTE at `index`. */
export function irte(r: Rig, table: number, index: number, fields: IrteFields): void {
  writeIrte(r.machine.memory, table, index, encodeIrte(fields));
}

/** Writes a posted-format IRTE at `index`. */
export function postedIrte(r: Rig, table: number, index: number, fields: PostedIrteFields): void {
  writeIrte(r.machine.memory, table, index, encodePostedIrte(fields));
}

/** Submits an Interrupt Entry Cache Invalidation: global, or the 2^im entries from `index`. */
export function invalidateIec(r: Rig, which: 'global' | { index: number; im?: number }): void {
  submitDescriptors(r.unit, [{ type: DescType.IEC, fields: which === 'global' ? { G: 0 } : { G: 1, IIDX: which.index, IM: which.im ?? 0 } }]);
}
