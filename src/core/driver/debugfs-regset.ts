import { U64 } from '../u64';
import { Reg, REG64, type RegName } from '../vtd/registers';
import type { VtdUnit } from '../vtd/unit';
import { isAtLeast, type KernelVersion } from './log';

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
