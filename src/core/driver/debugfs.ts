import type { PhysicalMemory } from '../hw/memory';
import { formatPciAddress, pciFromRid } from '../pci';
import { hexPad, U64 } from '../u64';
import { GSTS, Reg, REG64, type RegName } from '../vtd/registers';
import { contextEntryAddress, pasidEntryAddress, rootEntryAddress } from '../vtd/tables';
import type { VtdUnit } from '../vtd/unit';
import { hex64 } from '../vtd/walk';
import type { IommuKernel } from './kernel';
import { isAtLeast, type KernelVersion } from './log';
import { QI_LENGTH } from './qi';

/**
 * The VT-d driver's debugfs files (drivers/iommu/intel/debugfs.c), rendered from the model byte for byte:
 * what `cat /sys/kernel/debug/iommu/intel/<file>` prints on a machine in the same state. Like the kernel,
 * the renderer reads registers and table memory, plus the little driver state debugfs shows (which devices
 * and PASIDs have a directory, the invalidation queue's status words). src/readers/debugfs.ts parses these
 * files back into a machine; the two share the formats below.
 */

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
// iommu_regset
// ---------------------------------------------------------------------------------------------------------

const MTRR_FIXED = ['MTRR_FIX64K_00000', 'MTRR_FIX16K_80000', 'MTRR_FIX16K_A0000', 'MTRR_FIX4K_C0000', 'MTRR_FIX4K_C8000', 'MTRR_FIX4K_D0000', 'MTRR_FIX4K_D8000', 'MTRR_FIX4K_E0000', 'MTRR_FIX4K_E8000', 'MTRR_FIX4K_F0000', 'MTRR_FIX4K_F8000'];
const MTRR_VARIABLE = Array.from({ length: 10 }, (_, i) => [`MTRR_PHYSBASE${i}`, `MTRR_PHYSMASK${i}`]).flat();
const MTRRS = ['MTRRCAP', 'MTRRDEF', ...MTRR_FIXED, ...MTRR_VARIABLE];
const VCMD = ['VCCAP', 'VCMD', 'VCRSP'];

/** Offsets of every register a regset dump may name (Linux iommu.h; VCCAP moved from 0xe00 to 0xe30 in 5.8). */
export const DEBUGFS_REGISTERS: Readonly<Record<string, number>> = {
  ...Reg,
  MTRR_FIX64K_00000: 0x120,
  ...Object.fromEntries(MTRR_FIXED.slice(1).map((name, i) => [name, 0x128 + i * 8])),
  ...Object.fromEntries(MTRR_VARIABLE.map((name, i) => [name, 0x180 + i * 8])),
  VCCAP: 0xe30,
  VCMD: 0xe00,
  VCRSP: 0xe10,
};

/** Registers that are 64 bits wide: the rest are read with `dmar_readl` once the lists were split. */
export function isRegister64(name: string): boolean {
  return REG64.has(name as RegName) || name.startsWith('MTRR') || VCMD.includes(name);
}

const REGS_32 = ['VER', 'GCMD', 'GSTS', 'FSTS', 'FECTL', 'FEDATA', 'FEADDR', 'FEUADDR', 'PMEN', 'PLMBASE', 'PLMLIMIT', 'ICS', 'PRS', 'PECTL', 'PEDATA', 'PEADDR', 'PEUADDR'];
const REGS_64_HEAD = ['CAP', 'ECAP', 'RTADDR', 'CCMD', 'AFLOG', 'PHMBASE', 'PHMLIMIT', 'IQH', 'IQT', 'IQA', 'IRTA', 'PQH', 'PQT', 'PQA'];

/**
 * Which registers a kernel lists, in its order (test/unit/readers-debugfs.test.ts compares each with the
 * lists read from the sources, test/fixtures/kernel/debugfs-regs-*.txt, and with the real 6.12 dump):
 * - `single`: the first version, 4.20 (6825d3ea6cde "iommu/vt-d: Add debugfs support to show register
 *   contents") to 5.5: one list in register order, every register read with `dmar_readq` (so a 32-bit register
 *   shows its neighbour in the high half). Checked up to MTRR_FIX64K_00000 against the old list in the diff of
 *   the commit below; the rest of it (the other MTRRs, VCCAP/VCMD/VCRSP) is outside that hunk and no source of
 *   those versions is on disk, so the tail is assumed, not pinned.
 * - `split-vcmd`: 32-bit registers first, read with `dmar_readl`, then the 64-bit ones: ba3b01d7a6f4
 *   "iommu/vt-d: Fix debugfs register reads" (5.6; AUTOSEL-backported to 5.4.y and 5.5.y, checked: the stable
 *   mails quote the diff). With the virtual-command registers at the end, as 5.10 and 6.1 list them, up to
 *   6.3 (when they were added to the list, before 5.10, is not pinned).
 * - `split`: without VCCAP/VCMD/VCRSP, 6.4 to 6.17: 760f41d182ec "iommu/vt-d: Remove virtual command
 *   interface" (Jacob Pan; checked: the v8 patch mail quotes the debugfs hunk, the linux-next list has the id);
 *   the list of 6.12 and of the real 6.12 dump.
 * - `current`: also without AFLOG and CCMD, 6.18 and later: 7d4e40410283 "iommu/vt-d: Removal of Advanced
 *   Fault Logging" and 5bd5ab53e7b8 "iommu/vt-d: debugfs: Avoid dumping context command register" ("Intel
 *   IOMMU updates for v6.18", applied 2025-09-19; checked: the patch mails quote the one-line hunks, the
 *   linux-next revision list has the ids).
 */
export type RegsetLayout = 'single' | 'split-vcmd' | 'split' | 'current';

/** The layout the given kernel version prints (the boundaries above). */
export function regsetLayoutFor(version: KernelVersion): RegsetLayout {
  if (!isAtLeast(version, '5.6')) return 'single';
  if (!isAtLeast(version, '6.4')) return 'split-vcmd';
  return isAtLeast(version, '6.18') ? 'current' : 'split';
}

export const REGSET_LAYOUTS: Readonly<Record<RegsetLayout, { readonly regs32: readonly string[]; readonly regs64: readonly string[] }>> = {
  single: {
    regs32: [],
    regs64: [
      'VER', 'CAP', 'ECAP', 'GCMD', 'GSTS', 'RTADDR', 'CCMD', 'FSTS', 'FECTL', 'FEDATA', 'FEADDR', 'FEUADDR', 'AFLOG', 'PMEN', 'PLMBASE',
      'PLMLIMIT', 'PHMBASE', 'PHMLIMIT', 'IQH', 'IQT', 'IQA', 'ICS', 'IRTA', 'PQH', 'PQT', 'PQA', 'PRS', 'PECTL', 'PEDATA', 'PEADDR', 'PEUADDR',
      ...MTRRS, ...VCMD,
    ],
  },
  'split-vcmd': { regs32: REGS_32, regs64: [...REGS_64_HEAD, ...MTRRS, ...VCMD] },
  split: { regs32: REGS_32, regs64: [...REGS_64_HEAD, ...MTRRS] },
  current: { regs32: REGS_32, regs64: [...REGS_64_HEAD.filter((r) => r !== 'AFLOG' && r !== 'CCMD'), ...MTRRS] },
};

export const REGSET_HEADER = 'Name\t\t\tOffset\t\tContents';

export function regsetTitle(unit: string, base: number): string {
  return `IOMMU: ${unit} Register Base Address: ${base.toString(16)}`;
}

/** `%-16s\t0x%02x\t\t0x%016llx` */
export function regsetRow(name: string, offset: number, value: U64): string {
  return `${name.padEnd(16)}\t0x${offset.toString(16).padStart(2, '0')}\t\t0x${value.toHex()}`;
}

/** What `dmar_readq` returns at `offset`: a 64-bit register, or two adjacent 32-bit ones. */
function readq(unit: VtdUnit, offset: number): U64 {
  const r = unit.readRegister(offset);
  if (r.hi !== 0 || isWide(offset)) return r;
  return new U64(unit.readRegister(offset + 4).lo, r.lo);
}

function isWide(offset: number): boolean {
  for (const [name, o] of Object.entries(DEBUGFS_REGISTERS)) if (o === offset) return isRegister64(name);
  return false;
}

export function renderRegset(units: readonly VtdUnit[], layout: RegsetLayout = 'current'): string {
  const { regs32, regs64 } = REGSET_LAYOUTS[layout];
  let out = '';
  for (const unit of units) {
    out += regsetTitle(unit.name, unit.regBase) + '\n' + REGSET_HEADER + '\n';
    for (const name of regs32) {
      const offset = DEBUGFS_REGISTERS[name]!;
      out += regsetRow(name, offset, new U64(0, unit.readRegister(offset).lo)) + '\n';
    }
    for (const name of regs64) {
      const offset = DEBUGFS_REGISTERS[name]!;
      out += regsetRow(name, offset, readq(unit, offset)) + '\n';
    }
    out += '\n';
  }
  return out;
}

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
function smtEnabled(unit: VtdUnit): boolean {
  return (unit.readRegister('RTADDR').lo & RTADDR_SMT) !== 0;
}

function translationEnabled(unit: VtdUnit): boolean {
  return ((unit.readRegister('GSTS').lo >>> GSTS.TES) & 1) === 1;
}

function qword(mem: PhysicalMemory, addr: number): string {
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

// ---------------------------------------------------------------------------------------------------------
// invalidation_queue
// ---------------------------------------------------------------------------------------------------------

export function queueTitle(unit: string): string {
  return `Invalidation queue on IOMMU: ${unit}`;
}

export function queueGeometry(base: number, head: number, tail: number): string {
  return ` Base: 0x${base.toString(16)}\tHead: ${head}\tTail: ${tail}`;
}

export const QUEUE_HEADER_WIDE = 'Index\t\tqw0\t\t\tqw1\t\t\tqw2\t\t\tqw3\t\t\tstatus';
export const QUEUE_HEADER_NARROW = 'Index\t\tqw0\t\t\tqw1\t\t\tstatus';

export function queueRow(index: number, qwords: readonly string[], status: number): string {
  return `${String(index).padStart(5)}\t${qwords.join('\t')}\t${status.toString(16).padStart(16, '0')}`;
}

/** What the driver keeps beside the hardware queue: the status word of each slot (`qi->desc_status`). */
export type QueueStatus = (index: number) => number;

/**
 * Head and tail as an `invalidation_queue` file showed them. The kernel prints IQH and IQT as it reads them,
 * so a dump whose files were read one after another can show other values there than in `iommu_regset`.
 */
export interface QueuePointers {
  readonly head: number;
  readonly tail: number;
}

/** `qi_shift()`: descriptors are 32 bytes when the unit is scalable-mode capable (ECAP.SMTS), in any mode. */
export function descriptorShift(unit: VtdUnit): 4 | 5 {
  return unit.ecap.smts === 1 ? 5 : 4;
}

export function renderInvalidationQueue(units: readonly { readonly unit: VtdUnit; readonly qiStatus?: QueueStatus; readonly qiPointers?: QueuePointers }[]): string {
  let out = '';
  for (const { unit, qiStatus, qiPointers } of units) {
    if (!qiStatus || !unit.ecap.qi) continue;
    const shift = descriptorShift(unit);
    const wide = shift === 5;
    const size = 1 << shift;
    const iqa = unit.readRegister('IQA');
    const base = iqa.hi * 0x1_0000_0000 + ((iqa.lo & 0xffff_f000) >>> 0);
    // `dmar_readq(IQH) >> shift`: the whole register, so bits above the queue's index show as they are.
    const pointer = (name: 'IQH' | 'IQT') => {
      const r = unit.readRegister(name);
      return Math.floor((r.hi * 0x1_0000_0000 + r.lo) / size);
    };
    out += queueTitle(unit.name) + '\n';
    out += queueGeometry(base, qiPointers?.head ?? pointer('IQH'), qiPointers?.tail ?? pointer('IQT')) + '\n';
    out += (wide ? QUEUE_HEADER_WIDE : QUEUE_HEADER_NARROW) + '\n';
    for (let i = 0; i < QI_LENGTH; i++) {
      const at = base + i * size;
      const qwords = [qword(unit.memory, at), qword(unit.memory, at + 8)];
      if (wide) qwords.push(qword(unit.memory, at + 16), qword(unit.memory, at + 24));
      out += queueRow(i, qwords, qiStatus(i)) + '\n';
    }
    out += '\n';
  }
  return out;
}

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

// ---------------------------------------------------------------------------------------------------------
// dmar_perf_latency (CONFIG_DMAR_PERF)
// ---------------------------------------------------------------------------------------------------------

/** perf.c's `latency_counter_names`, concatenated: the column header `dmar_latency_snapshot` always prints. */
export const LATENCY_HEADER = [
  '                  <0.1us', '   0.1us-1us', '    1us-10us', '  10us-100us', '   100us-1ms', '    1ms-10ms', '      >=10ms', '     min(us)', '     max(us)', ' average(us)',
].join('');

/**
 * `latency_show`: the unit's title, then the statistics of each latency type counting has been enabled for
 * (by writing 1-3 to the file). The model counts none, so each unit shows its title and the column header.
 */
export function renderPerfLatency(units: readonly VtdUnit[]): string {
  let out = '';
  for (const unit of units) out += regsetTitle(unit.name, unit.regBase) + '\n' + LATENCY_HEADER + '\n';
  return out;
}

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
      .sort((a, b) => a.sid - b.sid)
      .map((d) => ({ segment: d.iommu.unit.segment, sid: d.sid, pasids: [...d.pasidDomains.keys()].sort((a, b) => a - b) })),
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
