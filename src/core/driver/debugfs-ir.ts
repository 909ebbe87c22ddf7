import { hexPad } from '../u64';
import { GSTS } from '../vtd/registers';
import type { VtdUnit } from '../vtd/unit';
import { hex64 } from '../vtd/walk';

// ---------------------------------------------------------------------------------------------------------
// ir_translation_struct
// ---------------------------------------------------------------------------------------------------------

/** `seq_puts(m, "****\\n\\n")` between the remapped and the posted tables (5.10, 6.1 and 6.12 alike). */
export const IR_SEPARATOR = '****';
export const IR_REMAPPED_HEADER = ' Entry SrcID   DstID    Vct IRTE_high\t\tIRTE_low';
export const IR_POSTED_HEADER = ' Entry SrcID   PDA_high PDA_low  Vct IRTE_high\t\tIRTE_low';
export const IR_NOT_ENABLED = 'Interrupt Remapping is not enabled';
/** INTR_REMAP_TABLE_ENTRIES: Linux always allocates 65536 entries. */
export const IR_TABLE_ENTRIES = 65536;

function sidText(sid: number): string {
  return `${((sid >> 8) & 0xff).toString(16).padStart(2, '0')}:${((sid >> 3) & 0x1f).toString(16).padStart(2, '0')}.${sid & 7}`;
}

/** An IRTE as two 64-bit words, each as [hi, lo] 32-bit halves. */
export interface IrteWords {
  readonly low: readonly [hi: number, lo: number];
  readonly high: readonly [hi: number, lo: number];
}

/** ` %-5d %02x:%02x.%01x %08x %02x  %016llx\t%016llx`: index, SID, destination ID, vector, then the raw entry. */
export function irRemappedRow(index: number, e: IrteWords): string {
  const vector = (e.low[1] >>> 16) & 0xff;
  return ` ${String(index).padEnd(5)} ${sidText(e.high[1] & 0xffff)} ${hexPad(e.low[0] >>> 0, 8)} ${hexPad(vector, 2)}  ${hex64(...e.high)}\t${hex64(...e.low)}`;
}

/** As the remapped row, with the posted-interrupt descriptor address (`pda_h`, `pda_l << 6`) before the vector. */
export function irPostedRow(index: number, e: IrteWords): string {
  const vector = (e.low[1] >>> 16) & 0xff;
  const pdaLow = (e.low[0] & 0xffff_ffc0) >>> 0;
  return ` ${String(index).padEnd(5)} ${sidText(e.high[1] & 0xffff)} ${hexPad(e.high[0] >>> 0, 8)} ${hexPad(pdaLow, 8)} ${hexPad(vector, 2)}  ${hex64(...e.high)}\t${hex64(...e.low)}`;
}

/** IRTA: table address and size (2^(S+1) entries); the driver allocates the table once per unit. */
function irTable(unit: VtdUnit): number | undefined {
  const irta = unit.readRegister('IRTA');
  const base = irta.hi * 0x1_0000_0000 + ((irta.lo & 0xffff_f000) >>> 0);
  return base === 0 ? undefined : base;
}

function irEntries(unit: VtdUnit, table: number, posted: boolean, row: typeof irRemappedRow): string {
  let out = '';
  const mem = unit.memory;
  for (let i = 0; i < IR_TABLE_ENTRIES; i++) {
    const at = table + i * 16;
    const lo = mem.readLo(at);
    if ((lo & 1) === 0 || ((lo >>> 15) & 1) !== (posted ? 1 : 0)) continue;
    out += row(i, { low: [mem.readHi(at), lo], high: [mem.readHi(at + 8), mem.readLo(at + 8)] }) + '\n';
  }
  return out;
}

export function renderIrTranslationStruct(units: readonly VtdUnit[]): string {
  let out = '';
  for (const unit of units) {
    if (!unit.ecap.ir) continue;
    out += `Remapped Interrupt supported on IOMMU: ${unit.name}\n`;
    const table = irTable(unit);
    const ires = ((unit.readRegister('GSTS').lo >>> GSTS.IRES) & 1) === 1;
    if (table !== undefined && ires) out += ` IR table address:${table.toString(16)}\n${IR_REMAPPED_HEADER}\n${irEntries(unit, table, false, irRemappedRow)}`;
    else out += IR_NOT_ENABLED + '\n';
    out += '\n';
  }
  out += IR_SEPARATOR + '\n\n';
  for (const unit of units) {
    if (!unit.cap.pi) continue;
    out += `Posted Interrupt supported on IOMMU: ${unit.name}\n`;
    const table = irTable(unit);
    if (table !== undefined) out += ` IR table address:${table.toString(16)}\n${IR_POSTED_HEADER}\n${irEntries(unit, table, true, irPostedRow)}`;
    else out += IR_NOT_ENABLED + '\n';
    out += '\n';
  }
  return out;
}
