import type { PhysicalMemory } from '../hw/memory';
import { formatPciAddress, pciFromRid } from '../pci';
import { pasidEntryAddress } from '../vtd/tables';
import type { VtdUnit } from '../vtd/unit';
import { hex64 } from '../vtd/walk';
import { contextAddress, pasidTableOf, remappingDisabled, smtEnabled, translationEnabled } from './debugfs-translation';

// ---------------------------------------------------------------------------------------------------------
// <device>/[<pasid>/]domain_translation_struct
// ---------------------------------------------------------------------------------------------------------

export const DOMAIN_HEADER = `${'IOVA_PFN'.padEnd(17)}\t${'PML5E'.padEnd(18)}\t${'PML4E'.padEnd(18)}\t${'PDPE'.padEnd(18)}\t${'PDE'.padEnd(18)}\tPTE`;

export function domainTitle(segment: number, sid: number, pasid: number | undefined, pgd: number): string {
  const dev = formatPciAddress(pciFromRid(sid, segment));
  return `Device ${dev} ${pasid === undefined ? '' : `with pasid ${pasid.toString(16)} `}@0x${pgd.toString(16)}`;
}

/**
 * `0x%013lx |\t` then PML5E, PML4E, PDPE always, PDE and PTE only when the walk reached them (since e8aa45f8cc2c
 * "iommu/vt-d: debugfs: Dump entry pointing to huge page", 6.7).
 */
export function domainRow(pfn: number, path: readonly string[]): string {
  let row = `0x${pfn.toString(16).padStart(13, '0')} |\t0x${path[5]}\t0x${path[4]}\t0x${path[3]}`;
  if (path[2] !== ZERO64) {
    row += `\t0x${path[2]}`;
    if (path[1] !== ZERO64) row += `\t0x${path[1]}`;
  }
  return row;
}

const ZERO64 = '0000000000000000';

/** The page table a device (and PASID) uses, as debugfs picks it: by PGTT (scalable) or TT (legacy). */
export function domainPageTable(unit: VtdUnit, sid: number, pasid: number): { pgd: number; levels: number; scalable: boolean } | undefined {
  const mem = unit.memory;
  const sm = smtEnabled(unit);
  const ctx = contextAddress(mem, unit.rootTableAddress, sm, sid >> 8, sid & 0xff);
  if (ctx === undefined || (mem.readLo(ctx) & 1) === 0) return undefined;
  const ctxLo = mem.readLo(ctx);
  if (!sm) {
    const tt = (ctxLo >>> 2) & 3;
    if (tt !== 0 && tt !== 1) return undefined;
    const pgd = (mem.readHi(ctx) & 0xf_ffff) * 0x1_0000_0000 + ((ctxLo & 0xffff_f000) >>> 0);
    return { pgd, levels: (mem.readLo(ctx + 8) & 7) + 2, scalable: false };
  }
  const dir = (mem.readHi(ctx) & 0xf_ffff) * 0x1_0000_0000 + ((ctxLo & 0xffff_f000) >>> 0);
  const table = pasidTableOf(mem, dir + Math.floor(pasid / 64) * 8);
  if (table === undefined) return undefined;
  const e = pasidEntryAddress(table, pasid);
  const lo0 = mem.readLo(e);
  if ((lo0 & 1) === 0) return undefined;
  const pgtt = (lo0 >>> 6) & 7;
  const aw = (lo0 >>> 2) & 7;
  const word = pgtt === 1 ? e + 16 : pgtt === 2 || pgtt === 3 ? e : undefined;
  if (word === undefined) return undefined;
  const pgd = (mem.readHi(word) & 0xf_ffff) * 0x1_0000_0000 + ((mem.readLo(word) & 0xffff_f000) >>> 0);
  return { pgd, levels: aw + 2, scalable: true };
}

/** `pgtable_walk_level`: every present leaf (either of bits 0-1 set), superpages ending the descent. */
function walkLevel(mem: PhysicalMemory, table: number, level: number, start: number, path: string[], out: string[]): void {
  if (level > 5 || level < 1) return;
  const span = 2 ** (12 + 9 * (level - 1));
  for (let i = 0; i < 512; i++) {
    const at = table + i * 8;
    const lo = mem.readLo(at);
    if ((lo & 3) === 0) continue;
    const hi = mem.readHi(at);
    path[level] = hex64(hi, lo);
    const iova = start + i * span;
    if (lo & 0x80 || level === 1) out.push(domainRow(Math.floor(iova / 4096), path));
    else walkLevel(mem, (hi & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0), level - 1, iova, path, out);
    path[level] = ZERO64;
  }
}

export function renderDomainTranslationStruct(units: readonly VtdUnit[], segment: number, sid: number, pasid: number): string {
  let out = '';
  for (const unit of units) {
    if (unit.segment !== segment) continue;
    if (!translationEnabled(unit)) {
      out += remappingDisabled(unit.name) + '\n';
      continue;
    }
    const pt = domainPageTable(unit, sid, pasid);
    if (!pt) continue;
    out += domainTitle(segment, sid, pt.scalable ? pasid : undefined, pt.pgd) + '\n' + DOMAIN_HEADER + '\n';
    const rows: string[] = [];
    walkLevel(unit.memory, pt.pgd, pt.levels, 0, Array(6).fill(ZERO64), rows);
    for (const r of rows) out += r + '\n';
    break;
  }
  return out;
}
