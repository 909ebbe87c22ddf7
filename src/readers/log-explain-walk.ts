import { U64 } from '../core/u64';
import { hexWord } from './hex';
import type { Access } from './log-event';

/**
 * A fault's table walk dump in words: where the walk stopped (which entry was not present, so nothing is
 * mapped under it) or what the leaf allows, and what to check for that. It reads the dumps Linux prints with
 * CONFIG_DMAR_DEBUG (`dmar_fault_dump_ptes`, `details.walk.steps` from vtd-walk-dump.ts), the entries Xen's
 * `print_vtd_entries` prints (`details.walk.entries`), and the one entry of QEMU's walk errors.
 *
 * How Linux 6.12's `pgtable_walk` (drivers/iommu/intel/iommu.c) prints a walk: for each level from the top it
 * prints `pte level: N, pte value: V` for the entry on the address's path; when that entry is not present
 * (`dma_pte_present`: neither bit 0 nor bit 1 set) it prints `page table not present at level N-1` and stops:
 * the table below the entry does not exist. So `page table not present at level 0` says that the level-1
 * entry, the leaf, is empty: there is no level 0. It also stops at a present level-1 entry or a superpage
 * (bit 7), without a line. Kernels before 6ceb93f952f6 / f1645676f25d (6.13, and the stable backports)
 * printed `PTE not present at level N` instead of the empty entry's own line. Xen prints `lN[idx] = V`
 * for each entry (newer Xen with `rw`/`r-`/`--`), and stops after one that is not present.
 */

type TableFormat = 'second-level' | 'first-level';

/** One paging entry on the address's path. `value` is null when the dump did not print it (`PTE not present at level N`). */
interface PagingEntry {
  readonly level: number;
  readonly value: U64 | null;
}

interface Walk {
  /** Printed step by step, as `walk:` shows it. */
  readonly text: string;
  /** Where the walk stopped before the page table, in words; null when it reached the page table. */
  readonly stoppedBefore: string | null;
  readonly entries: readonly PagingEntry[];
  /** The format of the paging entries, or null when the dump walks a table the hardware did not use for this request. */
  readonly format: TableFormat | null;
  /** Why `format` is null, when it is. */
  readonly formatNote: string | null;
  /** The dump ended with `page table not present at level 0`. */
  readonly levelZeroLine?: boolean;
}

export interface WalkReading {
  /** The `walk:` line's text. */
  readonly text: string;
  /** What the walk shows about the faulting address, in words; null when it shows nothing certain. */
  readonly finding: string | null;
  /** What to check, for that finding. */
  readonly check: string | null;
}

const SIZE_NAMES = ['4 KiB', '2 MiB', '1 GiB', '512 GiB', '256 TiB'];

/** The size of the region one entry at `level` maps: 4 KiB at level 1, times 512 per level above. */
function regionShift(level: number): number {
  return 12 + 9 * (level - 1);
}

/** `addr` with its low `shift` bits cleared (`fill` false) or set (`fill` true). */
function withLowBits(addr: U64, shift: number, fill: boolean): U64 {
  if (shift >= 32) {
    const m = shift >= 64 ? 0xffff_ffff : (2 ** (shift - 32) - 1) >>> 0;
    return fill ? new U64(addr.hi | m, 0xffff_ffff) : new U64(addr.hi & ~m, 0);
  }
  const m = (2 ** shift - 1) >>> 0;
  return fill ? new U64(addr.hi, addr.lo | m) : new U64(addr.hi, addr.lo & ~m);
}

/** `the 512 GiB at 0x0-0x7fffffffff` (`the 4 KiB page 0x300000-0x300fff` at level 1). */
function regionText(address: U64, level: number): string {
  const shift = regionShift(level);
  const span = `${withLowBits(address, shift, false).toString()}-${withLowBits(address, shift, true).toString()}`;
  return level === 1 ? `the 4 KiB page ${span}` : `the ${SIZE_NAMES[level - 1] ?? `2^${shift}-byte region`} at ${span}`;
}

/** Bits 51:12 of an entry: the table or page it points to. */
function entryAddress(v: U64): U64 {
  return new U64(v.hi & 0xf_ffff, v.lo & 0xffff_f000);
}

/** Whether the walk treats the entry as present: R or W for second-level entries (as `dma_pte_present` and Xen test), P for first-level ones. */
function present(format: TableFormat, v: U64): boolean {
  return format === 'first-level' ? v.bit(0) : v.bit(0) || v.bit(1);
}

/** Whether a present entry maps a page: level 1, or a superpage (PS, bit 7) at level 2 or 3. */
function isLeaf(level: number, v: U64): boolean {
  return level === 1 || ((level === 2 || level === 3) && v.bit(7));
}

function hexWordOf(s: unknown): U64 | null {
  return typeof s === 'string' ? (hexWord(s) ?? null) : null;
}

/** The walk of a Linux CONFIG_DMAR_DEBUG dump (vtd-walk-dump.ts steps). */
function kernelWalk(walk: { steps?: Record<string, unknown>[]; pasidEntry?: Record<string, unknown> }): Walk {
  const parts: string[] = [];
  const entries: PagingEntry[] = [];
  let stoppedBefore: string | null = null;
  let scalable = false;
  let levelZeroLine = false;
  const pasidWords: string[] = [];
  const flushPasid = () => {
    if (pasidWords.length === 0) return;
    // The words that say something: up to the last one that is not zero (the first three hold PGTT, SLPTPTR, DID and FLPTPTR).
    let n = pasidWords.length;
    while (n > 1 && pasidWords[n - 1] === '0x0') n--;
    parts.push(`pasid entry ${pasidWords.slice(0, n).map((w, i) => `[${i}] ${w}`).join(' ')}`);
    pasidWords.length = 0;
  };
  for (const s of walk.steps ?? []) {
    if (s.entry !== 'pasid-entry') flushPasid();
    if (s.entry === 'root') {
      if (s.present === false) {
        parts.push('no root table');
        stoppedBefore = 'the unit has no root table';
      } else if (s.scalable) {
        scalable = true;
        parts.push(`root hi ${String(s.hi)}, lo ${String(s.low)}`);
      } else parts.push(`root ${String(s.low)}`);
    } else if (s.entry === 'context') {
      if (s.present === false && s.note === undefined) {
        // `context table is not present`: iommu_context_addr found the root entry (its half, in scalable mode) not present.
        parts.push('no context table');
        stoppedBefore = 'the root entry of this bus is not present, so there is no context table: nothing on the bus is set up for translation';
      } else if (s.present === false) {
        // `legacy mode page table is not present` / `pasid directory table is not present`: the context entry's P is clear.
        const last = parts[parts.length - 1];
        if (last && last.startsWith('context ')) parts[parts.length - 1] = `${last} (not present)`;
        else parts.push('context entry not present');
        stoppedBefore = 'the context entry of this device is not present: the device is not attached to a domain';
      } else parts.push(`context hi ${String(s.hi)}, lo ${String(s.low)}`);
    } else if (s.entry === 'pasid-dir') {
      if (s.present === false) {
        const last = parts[parts.length - 1];
        if (last && last.startsWith('pasid dir ')) parts[parts.length - 1] = `${last} (not present)`;
        else parts.push('pasid dir entry not present');
        stoppedBefore = 'the PASID directory entry is not present: no PASID of its 64 has a PASID table';
      } else parts.push(`pasid dir ${String(s.value)}`);
    } else if (s.entry === 'pasid-entry') {
      if (s.present === false) {
        flushPasid();
        parts.push('(not present)');
        stoppedBefore = 'the PASID entry is not present: this PASID is not set up on the device';
      } else pasidWords[Number(s.index)] = String(s.value);
    } else if (s.entry === 'pte') {
      if (s.present === false) {
        // `PTE not present at level N` (before 6.13): the level-N entry is not present; its value was not printed.
        parts.push(`level ${String(s.level)} not present`);
        entries.push({ level: Number(s.level), value: null });
      } else {
        parts.push(`level ${String(s.level)} ${String(s.value)}`);
        entries.push({ level: Number(s.level), value: hexWordOf(s.value) });
      }
    } else if (s.entry === 'table' && s.present === false) {
      // `page table not present at level N`: the level-N+1 entry printed before it is not present.
      if (s.level === 0) levelZeroLine = true;
      const last = entries[entries.length - 1];
      if (last && last.level === Number(s.level) + 1) parts[parts.length - 1] = `${parts[parts.length - 1]!} (not present)`;
      else parts.push(`level ${Number(s.level) + 1} not present`);
    }
  }
  flushPasid();
  let format: TableFormat | null = 'second-level';
  let formatNote: string | null = null;
  if (scalable) {
    const pgtt = walk.pasidEntry?.pgtt;
    // dmar_fault_dump_ptes walks FLPTPTR for a first-level PASID entry and SLPTPTR for any other.
    if (pgtt === 1) format = 'first-level';
    else if (pgtt !== 2 && walk.pasidEntry) {
      format = null;
      formatNote = `the PASID entry is ${String(walk.pasidEntry.translation)}: the kernel dumps its second-level pointer with this address, which is not the walk the hardware made`;
    }
  }
  return { text: parts.join(' -> ').replace(/ -> \(not present\)/g, ' (not present)'), stoppedBefore, entries, format, formatNote, levelZeroLine };
}

const XEN_LEVEL = /^l(\d)\s*\[([0-9a-fA-F]{1,4})\]\s*=\s*([0-9a-fA-F]{1,16})\b/;
const XEN_NOT_PRESENT = /^(root_entry|ctxt_entry|l\d)\s*\[[0-9a-fA-F]{1,4}\]\s*not present/;

/** The walk of Xen's print_vtd_entries lines (second-level tables: Xen runs VT-d in legacy mode). */
function xenWalk(lines: readonly string[]): Walk {
  const parts: string[] = [];
  const entries: PagingEntry[] = [];
  let stoppedBefore: string | null = null;
  for (const line of lines) {
    const lv = XEN_LEVEL.exec(line);
    const np = XEN_NOT_PRESENT.exec(line);
    const root = /^root_entry\s*\[[0-9a-fA-F]{1,4}\]\s*=\s*([0-9a-fA-F]{1,16})/.exec(line);
    const ctx = /^context\s*\[[0-9a-fA-F]{1,4}\]\s*=\s*([0-9a-fA-F]{1,16})_([0-9a-fA-F]{1,16})/.exec(line);
    if (lv) {
      const v = hexWord(lv[3]!) ?? null;
      entries.push({ level: Number(lv[1]), value: v });
      parts.push(`level ${lv[1]} ${v ? v.toString() : lv[3]}${v && !present('second-level', v) ? ' (not present)' : ''}`);
    } else if (root) parts.push(`root 0x${root[1]!.replace(/^0+(?=.)/, '').toLowerCase()}`);
    else if (ctx) parts.push(`context hi 0x${ctx[1]!.replace(/^0+(?=.)/, '').toLowerCase()}, lo 0x${ctx[2]!.replace(/^0+(?=.)/, '').toLowerCase()}`);
    else if (np && np[1] === 'root_entry') {
      parts.push('(not present)');
      stoppedBefore = 'the root entry of this bus is not present: nothing on the bus is set up for translation';
    } else if (np && np[1] === 'ctxt_entry') {
      parts.push('(not present)');
      stoppedBefore = 'the context entry of this device is not present: the device is not assigned to a domain';
    }
    // `lN[idx] not present` repeats what the entry's own line showed.
  }
  return { text: parts.join(' -> ').replace(/ -> \(not present\)/g, ' (not present)'), stoppedBefore, entries, format: 'second-level', formatNote: null };
}

function permissions(format: TableFormat, v: U64): string {
  if (format === 'first-level') {
    const bits = [v.bit(1) ? 'writable (R/W set)' : 'read-only (R/W clear)', v.bit(2) ? 'user (U/S set)' : 'supervisor-only (U/S clear)'];
    if (v.bit(63)) bits.push('not executable (XD set)');
    return bits.join(', ');
  }
  const r = v.bit(0);
  const w = v.bit(1);
  return r && w ? 'read/write (R and W set)' : r ? 'read-only (R set, W clear)' : w ? 'write-only (W set, R clear)' : 'with no access (R and W clear)';
}

/** Whether entry `v` allows `access` (read needs R in a second-level entry; any present first-level entry reads). */
function allows(format: TableFormat, v: U64, access: Access): boolean {
  if (format === 'first-level') return access === 'write' ? v.bit(1) : access === 'exec' ? !v.bit(63) : true;
  return access === 'write' ? v.bit(1) : v.bit(0);
}

const CHECK_UNMAPPED_FL = 'For SVA the page is not present in the process (never touched, or swapped out) and the device did not ask for it with a page request (PRI); for a DMA (IOVA) domain, check that the IOVA was mapped and not already unmapped.';
const CHECK_UNMAPPED = 'Check that the address was mapped in this device\'s domain when the device used it and was not already unmapped (use-after-unmap), and that the device was given this IOVA, not a physical or stale address.';

/** What the walk shows about `address`, from its entries. */
function readEntries(walk: Walk, address: U64 | null, access: Access | null, reasonCode: number | null): WalkReading {
  const none: WalkReading = { text: walk.text, finding: null, check: null };
  if (walk.stoppedBefore) return { text: walk.text, finding: `the walk stopped before the page table: ${walk.stoppedBefore}.`, check: null };
  if (!walk.format) return { text: walk.text, finding: walk.formatNote ? `${walk.formatNote}.` : null, check: null };
  const format = walk.format;
  const last = walk.entries[walk.entries.length - 1];
  if (!last) return none;
  const where = (level: number) => (address ? regionText(address, level) : `the region of the level-${level} entry`);
  // An unmapped address is reported by its access in legacy mode (and by QEMU): 0x06 for a read, 0x05 for a write.
  const legacyCode = reasonCode === 0x05 || reasonCode === 0x06 ? ` (legacy VT-d reports ${reasonCode === 0x05 ? 'a write to' : 'a read of'} an unmapped address with this reason)` : '';
  if (last.value === null || !present(format, last.value)) {
    const value = last.value ? ` (${last.value.toString()})` : '';
    // `page table not present at level 0` after an empty level-1 entry: the kernel names the level below the entry, and there is none.
    const levelZero = walk.levelZeroLine && last.level === 1 ? ' (the dump\'s "page table not present at level 0" says just this)' : '';
    const what = last.level === 1 ? `the level-1 entry${value}, the leaf, is not present${levelZero}: ${where(1)} is not mapped` : `the walk stopped at level ${last.level}: its entry${value} is not present, so nothing is mapped in ${where(last.level)}`;
    return { text: walk.text, finding: `${what}${legacyCode}.`, check: format === 'first-level' ? CHECK_UNMAPPED_FL : CHECK_UNMAPPED };
  }
  if (!isLeaf(last.level, last.value)) return { text: walk.text, finding: `the dump ends at the level-${last.level} entry, which points to a lower table: it does not show the leaf.`, check: null };
  const v = last.value;
  const shift = regionShift(last.level);
  const page = entryAddress(v);
  const target = address ? withLowBits(address, shift, false).toString() : null;
  const size = last.level === 1 ? '4 KiB page' : `${SIZE_NAMES[last.level - 1]} page (PS set)`;
  let text = `the walk reached the level-${last.level} leaf ${v.toString()}: it maps the ${size}${target ? ` at ${target}` : ''} to ${withLowBits(page, shift, false).toString()} ${permissions(format, v)}`;
  if (!access) return { text: walk.text, finding: `${text}.`, check: null };
  // The permission of a walk is that of every entry on it (second level: R and W of each level).
  const denying = walk.entries.filter((e) => e.value && !allows(format, e.value, access));
  if (denying.length === 0) {
    text += `, which allows this ${access}: the dump reads the tables when the kernel handles the fault, after the access, so the entries changed in between (mapped, or given the permission, after the device used the address)`;
    return { text: walk.text, finding: `${text}.`, check: 'Look for a map that raced with the device\'s access (the device used the IOVA before dma_map returned), or, in caching mode (a virtual IOMMU), a missing flush after the change.' };
  }
  const upper = denying.filter((e) => e !== last);
  text += `, so the ${access} was refused`;
  if (upper.length > 0) text += ` (the level-${upper.map((e) => e.level).join(', level-')} ${upper.length > 1 ? 'entries lack' : 'entry lacks'} the permission too)`;
  const direction =
    access === 'write'
      ? 'The device wrote to a buffer mapped for the device to read only (DMA_TO_DEVICE, IOMMU_READ): check the direction the buffer was mapped with, or whether the IOVA was reused by a read-only mapping.'
      : access === 'read'
        ? 'The device read a buffer mapped for the device to write only (DMA_FROM_DEVICE, IOMMU_WRITE): check the direction the buffer was mapped with, or whether the IOVA was reused by a write-only mapping.'
        : 'Check why the device executes from this page, or the mapping\'s XD bit.';
  return { text: walk.text, finding: `${text}.`, check: direction };
}

/** Reads `details.walk` of an event (a Linux dump or Xen's entries) for the access at `address`. */
export function readWalkDump(walk: unknown, address: string | null, access: Access | null, reasonCode: number | null): WalkReading | null {
  if (!walk || typeof walk !== 'object') return null;
  const w = walk as { entries?: string[]; steps?: Record<string, unknown>[]; pasidEntry?: Record<string, unknown>; iova?: string | null };
  const at = hexWordOf(address ?? w.iova ?? null);
  if (w.entries) return readEntries(xenWalk(w.entries), at, access, reasonCode);
  return readEntries(kernelWalk(w), at, access, reasonCode);
}

/** Reads the one second-level entry QEMU prints with a permission error (`level=`, `slpte=`). */
export function readQemuEntry(level: number, value: string, address: string | null, access: Access | null, reasonCode: number | null): WalkReading | null {
  const v = hexWord(value);
  if (!v) return null;
  const walk: Walk = { text: `level ${level} ${v.toString()}`, stoppedBefore: null, entries: [{ level, value: v }], format: 'second-level', formatNote: null };
  const at = address ? (hexWord(address) ?? null) : null;
  if (!present('second-level', v)) return readEntries(walk, at, access, reasonCode);
  // A present entry without the permission: at level 1 it is the leaf; above, an entry on the path.
  if (isLeaf(level, v)) return readEntries(walk, at, access, reasonCode);
  return { text: walk.text, finding: `the level-${level} entry ${v.toString()} points to a lower table but is ${permissions('second-level', v)}, so the ${access ?? 'access'} was refused there (QEMU checks each level's R and W).`, check: 'Check the upper-level entry: Linux sets R and W in every non-leaf entry, so a missing one is a corrupted table.' };
}
