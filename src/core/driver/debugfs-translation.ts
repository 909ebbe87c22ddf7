import type { PhysicalMemory } from '../hw/memory';
import { GSTS } from '../vtd/registers';
import { contextEntryAddress, pasidEntryAddress, rootEntryAddress } from '../vtd/tables';
import type { VtdUnit } from '../vtd/unit';
import { hex64 } from '../vtd/walk';

// ---------------------------------------------------------------------------------------------------------
// dmar_translation_struct
// ---------------------------------------------------------------------------------------------------------

export const TRANSLATION_HEADER = 'B.D.F\tRoot_entry\t\t\t\tContext_entry\t\t\t\tPASID\tPASID_table_entry';

export function translationTitle(unit: string, rootTable: number): string {
  return `IOMMU ${unit}: Root Table Address: 0x${rootTable.toString(16)}`;
}

export function remappingDisabled(unit: string): string {
  return `DMA Remapping is not enabled on ${unit}`;
}

const RTADDR_SMT = 1 << 10;

/** Whether the driver runs the unit in scalable mode, as debugfs decides it (RTADDR.SMT). */
export function smtEnabled(unit: VtdUnit): boolean {
  return (unit.readRegister('RTADDR').lo & RTADDR_SMT) !== 0;
}

export function translationEnabled(unit: VtdUnit): boolean {
  return ((unit.readRegister('GSTS').lo >>> GSTS.TES) & 1) === 1;
}

export function qword(mem: PhysicalMemory, addr: number): string {
  return hex64(mem.readHi(addr), mem.readLo(addr));
}

/** `iommu_context_addr(iommu, bus, devfn, 0)`: the context entry's address, or undefined when the root half is not present. */
export function contextAddress(mem: PhysicalMemory, rootTable: number, scalable: boolean, bus: number, devfn: number): number | undefined {
  const root = rootEntryAddress(rootTable, bus);
  const entry = scalable && devfn >= 0x80 ? root + 8 : root;
  const lo = mem.readLo(entry);
  if ((lo & 1) === 0) return undefined;
  const table = (mem.readHi(entry) & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
  return contextEntryAddress(table, devfn, scalable);
}

/** A PASID directory entry's table (`get_pasid_table_from_pde`), or undefined when not present. */
export function pasidTableOf(mem: PhysicalMemory, dirEntry: number): number | undefined {
  const lo = mem.readLo(dirEntry);
  if ((lo & 1) === 0) return undefined;
  return (mem.readHi(dirEntry) & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
}

/** `get_pasid_dir_size`: directory entries from the context entry's PDTS field. */
export function pasidDirSize(contextLo: number): number {
  return 2 ** (((contextLo >>> 9) & 7) + 7);
}

export function translationRow(bus: number, devfn: number, rootEntry: string, contextEntry: string, pasid: number, pasidEntry: string): string {
  const bdf = `${bus.toString(16).padStart(2, '0')}:${(devfn >> 3).toString(16).padStart(2, '0')}.${devfn & 7}`;
  return `${bdf}\t${rootEntry}\t${contextEntry}\t${String(pasid).padEnd(6)}\t${pasidEntry}`;
}

const ZERO_PASID_ENTRY = '0x0000000000000000:0x0000000000000000:0x0000000000000000';

export function renderTranslationStruct(units: readonly VtdUnit[]): string {
  let out = '';
  for (const unit of units) {
    if (!translationEnabled(unit)) {
      out += remappingDisabled(unit.name) + '\n';
      continue;
    }
    const mem = unit.memory;
    const root = unit.rootTableAddress;
    const sm = smtEnabled(unit);
    out += translationTitle(unit.name, root) + '\n' + TRANSLATION_HEADER + '\n';
    for (let bus = 0; bus < 256; bus++) {
      const rootEntry = rootEntryAddress(root, bus);
      const rootText = `0x${qword(mem, rootEntry + 8)}:0x${qword(mem, rootEntry)}`;
      for (let devfn = 0; devfn < 256; devfn++) {
        const ctx = contextAddress(mem, root, sm, bus, devfn);
        if (ctx === undefined) break; // as the kernel: a missing half ends the bus
        const ctxLo = mem.readLo(ctx);
        if ((ctxLo & 1) === 0) continue;
        const ctxText = `0x${qword(mem, ctx + 8)}:0x${qword(mem, ctx)}`;
        if (!sm) {
          out += translationRow(bus, devfn, rootText, ctxText, -1, ZERO_PASID_ENTRY) + '\n';
          continue;
        }
        const dir = (mem.readHi(ctx) & 0xf_ffff) * 0x1_0000_0000 + ((ctxLo & 0xffff_f000) >>> 0);
        const dirSize = pasidDirSize(ctxLo);
        for (let d = 0; d < dirSize; d++) {
          const table = pasidTableOf(mem, dir + d * 8);
          if (table === undefined) continue;
          for (let i = 0; i < 64; i++) {
            const e = pasidEntryAddress(table, i);
            if ((mem.readLo(e) & 1) === 0) continue;
            out += translationRow(bus, devfn, rootText, ctxText, d * 64 + i, `0x${qword(mem, e + 16)}:0x${qword(mem, e + 8)}:0x${qword(mem, e)}`) + '\n';
          }
        }
      }
    }
    out += '\n';
  }
  return out;
}
