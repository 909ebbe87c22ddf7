import type { PhysicalMemory } from '../hw/memory';
import { U64 } from '../u64';
import { encodeDescriptor } from './descriptors';
import { GCMD, Reg } from './registers';
import {
  CONTEXT_LEGACY,
  CONTEXT_SCALABLE,
  encodeEntry,
  IRTE_POSTED,
  IRTE_REMAPPED,
  type Layout,
  PASID_DIR_ENTRY,
  PASID_ENTRY,
  PI_DESCRIPTOR,
  ROOT_LEGACY,
  ROOT_SCALABLE,
} from './structures';
import type { VtdUnit } from './unit';

/**
 * What software does to a VT-d unit, at the lowest level: write translation structures into memory in
 * their layouts and program registers. The driver model builds on these; hardware tests use them directly,
 * including to write deliberately broken entries.
 */

/** Writes an entry's words, highest 64-bit word first and qword 0 (with the present bit) last, as Linux does. */
export function writeEntry(mem: PhysicalMemory, addr: number, words: readonly number[], what = 'entry'): void {
  for (let q = words.length / 2 - 1; q >= 0; q--) mem.write64(addr + q * 8, words[q * 2 + 1]! >>> 0, words[q * 2]! >>> 0, words.length > 2 ? `${what}.qw${q}` : what);
}

export function readEntry(mem: PhysicalMemory, addr: number, layout: Layout): number[] {
  const out: number[] = [];
  for (let q = 0; q < layout.words; q++) out.push(mem.readLo(addr + q * 8), mem.readHi(addr + q * 8));
  return out;
}

export function rootEntryAddress(rootTable: number, bus: number): number {
  return rootTable + bus * 16;
}

/** Address of the context entry for `devfn` in the table the root entry points to (scalable: 32-byte entries per half). */
export function contextEntryAddress(contextTable: number, devfn: number, scalable: boolean): number {
  return scalable ? contextTable + (devfn & 0x7f) * 32 : contextTable + devfn * 16;
}

export function pasidDirEntryAddress(pasidDir: number, pasid: number): number {
  return pasidDir + Math.floor(pasid / 64) * 8;
}

export function pasidEntryAddress(pasidTable: number, pasid: number): number {
  return pasidTable + (pasid & 63) * 64;
}

export function writeLegacyRootEntry(mem: PhysicalMemory, rootTable: number, bus: number, contextTable: number | undefined): void {
  writeEntry(mem, rootEntryAddress(rootTable, bus), encodeEntry(ROOT_LEGACY, contextTable === undefined ? {} : { P: true, CTP: contextTable }), 'root-entry');
}

/** Scalable-mode root entry: the lower half serves devfn 0x00-0x7f, the upper half 0x80-0xff. */
export function writeScalableRootEntry(mem: PhysicalMemory, rootTable: number, bus: number, lower: number | undefined, upper: number | undefined): void {
  writeEntry(
    mem,
    rootEntryAddress(rootTable, bus),
    encodeEntry(ROOT_SCALABLE, { ...(lower !== undefined ? { LP: true, LCTP: lower } : {}), ...(upper !== undefined ? { UP: true, UCTP: upper } : {}) }),
    'sm-root-entry',
  );
}

export interface LegacyContextFields {
  readonly present?: boolean;
  readonly fpd?: boolean;
  /** 0: untranslated requests only; 1: also ATS translated requests; 2: pass-through. */
  readonly tt: 0 | 1 | 2;
  readonly slptptr?: number;
  /** Address width: 1 = 39-bit (3 levels), 2 = 48-bit (4), 3 = 57-bit (5). */
  readonly aw: number;
  readonly did: number;
}

export function writeLegacyContext(mem: PhysicalMemory, contextTable: number, devfn: number, f: LegacyContextFields): void {
  writeEntry(
    mem,
    contextEntryAddress(contextTable, devfn, false),
    encodeEntry(CONTEXT_LEGACY, { P: f.present ?? true, FPD: f.fpd ?? false, TT: f.tt, SLPTPTR: f.slptptr ?? 0, AW: f.aw, DID: f.did }),
    'context-entry',
  );
}

export interface ScalableContextFields {
  readonly present?: boolean;
  readonly fpd?: boolean;
  readonly dte?: boolean;
  readonly pasidEnable?: boolean;
  readonly pre?: boolean;
  /** PASID directory size: 2^(PDTS+7) directory entries (7: the whole 20-bit PASID space). */
  readonly pdts: number;
  readonly pasidDir: number;
  readonly ridPasid?: number;
  readonly ridPriv?: boolean;
}

export function writeScalableContext(mem: PhysicalMemory, contextTable: number, devfn: number, f: ScalableContextFields): void {
  writeEntry(
    mem,
    contextEntryAddress(contextTable, devfn, true),
    encodeEntry(CONTEXT_SCALABLE, {
      P: f.present ?? true,
      FPD: f.fpd ?? false,
      DTE: f.dte ?? false,
      PASIDE: f.pasidEnable ?? false,
      PRE: f.pre ?? false,
      PDTS: f.pdts,
      PASIDDIRPTR: f.pasidDir,
      RID_PASID: f.ridPasid ?? 0,
      RID_PRIV: f.ridPriv ?? false,
    }),
    'sm-context-entry',
  );
}

export function writePasidDirEntry(mem: PhysicalMemory, pasidDir: number, pasid: number, pasidTable: number | undefined, fpd = false): void {
  writeEntry(mem, pasidDirEntryAddress(pasidDir, pasid), encodeEntry(PASID_DIR_ENTRY, pasidTable === undefined ? {} : { P: true, FPD: fpd, SMPTBLPTR: pasidTable }), 'pasid-dir-entry');
}

export interface PasidEntryFields {
  readonly present?: boolean;
  readonly fpd?: boolean;
  /** 1 first-level, 2 second-level, 3 nested, 4 pass-through. */
  readonly pgtt: number;
  readonly did: number;
  /** Second-level address width (1: 39-bit, 2: 48-bit, 3: 57-bit). */
  readonly aw?: number;
  readonly slptptr?: number;
  readonly flptptr?: number;
  /** 1: 5-level first-level paging. */
  readonly flpm?: number;
  readonly sre?: boolean;
  readonly ere?: boolean;
  /** Second-level execute enable (qw0 bit 5): the X bits of second-level entries decide execute requests. */
  readonly slee?: boolean;
  readonly wpe?: boolean;
  readonly nxe?: boolean;
  readonly smep?: boolean;
  readonly eafe?: boolean;
  readonly ssade?: boolean;
  readonly pwsnp?: boolean;
  readonly pgsnp?: boolean;
}

export function encodePasidEntry(f: PasidEntryFields): number[] {
  return encodeEntry(PASID_ENTRY, {
    P: f.present ?? true,
    FPD: f.fpd ?? false,
    AW: f.aw ?? 0,
    PGTT: f.pgtt,
    SLEE: f.slee ?? false,
    SSADE: f.ssade ?? false,
    SLPTPTR: f.slptptr ?? 0,
    DID: f.did,
    PWSNP: f.pwsnp ?? false,
    PGSNP: f.pgsnp ?? false,
    SRE: f.sre ?? false,
    ERE: f.ere ?? false,
    FLPM: f.flpm ?? 0,
    WPE: f.wpe ?? false,
    NXE: f.nxe ?? false,
    SMEP: f.smep ?? false,
    EAFE: f.eafe ?? false,
    FLPTPTR: f.flptptr ?? 0,
  });
}

export function writePasidEntry(mem: PhysicalMemory, pasidTable: number, pasid: number, f: PasidEntryFields): void {
  writeEntry(mem, pasidEntryAddress(pasidTable, pasid), encodePasidEntry(f), 'pasid-entry');
}

export function clearPasidEntry(mem: PhysicalMemory, pasidTable: number, pasid: number): void {
  writeEntry(mem, pasidEntryAddress(pasidTable, pasid), new Array(16).fill(0), 'pasid-entry');
}

// ---- interrupt-remapping table entries ----

export interface IrteFields {
  readonly present?: boolean;
  readonly fpd?: boolean;
  readonly vector: number;
  /**
   * DST as stored: a 32-bit x2APIC ID when the table is used with IRTA.EIME = 1; in xAPIC mode the 8-bit APIC
   * ID sits in bits 15:8 (Linux's IRTE_DEST: `dest << 8`), the other bits are reserved.
   */
  readonly dst: number;
  readonly destinationMode?: 'physical' | 'logical';
  readonly redirectionHint?: boolean;
  readonly triggerMode?: 'edge' | 'level';
  /** DLM: 0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT (3 and 6 reserved). */
  readonly deliveryMode?: number;
  readonly avail?: number;
  /** Source validation: SVT 0 none, 1 requester ID with SQ, 2 bus range (SID = start bus << 8 | end bus). */
  readonly sid?: number;
  readonly sq?: number;
  readonly svt?: number;
}

/** A remapped-format IRTE (IM = 0). */
export function encodeIrte(f: IrteFields): number[] {
  return encodeEntry(IRTE_REMAPPED, {
    P: f.present ?? true,
    FPD: f.fpd ?? false,
    DM: f.destinationMode === 'logical',
    RH: f.redirectionHint ?? false,
    TM: f.triggerMode === 'level',
    DLM: f.deliveryMode ?? 0,
    AVAIL: f.avail ?? 0,
    V: f.vector,
    DST: f.dst >>> 0,
    SID: f.sid ?? 0,
    SQ: f.sq ?? 0,
    SVT: f.svt ?? 0,
  });
}

export interface PostedIrteFields {
  readonly present?: boolean;
  readonly fpd?: boolean;
  readonly vector: number;
  /** Physical address of the 64-byte posted-interrupt descriptor. */
  readonly descriptor: number;
  readonly urgent?: boolean;
  readonly avail?: number;
  readonly sid?: number;
  readonly sq?: number;
  readonly svt?: number;
}

/** A posted-format IRTE (IM = 1): PDA_L holds descriptor bits 31:6, PDA_H bits 63:32. */
export function encodePostedIrte(f: PostedIrteFields): number[] {
  if (f.descriptor % 64 !== 0) throw new RangeError(`posted-interrupt descriptor 0x${f.descriptor.toString(16)} is not 64-byte aligned`);
  return encodeEntry(IRTE_POSTED, {
    P: f.present ?? true,
    FPD: f.fpd ?? false,
    AVAIL: f.avail ?? 0,
    URG: f.urgent ?? false,
    IM: true,
    VV: f.vector,
    PDA_L: (f.descriptor % 0x1_0000_0000) / 64,
    PDA_H: Math.floor(f.descriptor / 0x1_0000_0000),
    SID: f.sid ?? 0,
    SQ: f.sq ?? 0,
    SVT: f.svt ?? 0,
  });
}

export interface PiDescriptorFields {
  /** NV: the notification vector. */
  readonly nv: number;
  /** NDST as the field holds it: the APIC ID in bits 15:8 in xAPIC mode, all 32 bits in x2APIC mode. */
  readonly ndst: number;
  readonly on?: boolean;
  readonly sn?: boolean;
  /** Vectors pending in PIR. */
  readonly pending?: readonly number[];
}

/** A posted-interrupt descriptor (64 bytes) as 16 words, memory order: PIR bits, then ON, SN, NV, NDST. */
export function encodePiDescriptor(f: PiDescriptorFields): number[] {
  const w = encodeEntry(PI_DESCRIPTOR, { ON: f.on ?? false, SN: f.sn ?? false, NV: f.nv, NDST: f.ndst >>> 0 });
  for (const v of f.pending ?? []) {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`PIR vector ${v} is not 8-bit`);
    w[v >>> 5] = (w[v >>> 5]! | (1 << (v & 31))) >>> 0;
  }
  return w;
}

/** Writes a posted-interrupt descriptor, as KVM sets one up for a vCPU (or Linux one per CPU for posted MSIs). */
export function writePiDescriptor(mem: PhysicalMemory, addr: number, f: PiDescriptorFields): void {
  if (addr % 64 !== 0) throw new RangeError(`posted-interrupt descriptor 0x${addr.toString(16)} is not 64-byte aligned`);
  writeEntry(mem, addr, encodePiDescriptor(f), 'pi-desc');
}

export function irteAddress(table: number, index: number): number {
  return table + index * 16;
}

/** Writes an IRTE as Linux's modify_irte does: the low qword, then the high one. */
export function writeIrte(mem: PhysicalMemory, table: number, index: number, words: readonly number[]): void {
  const at = irteAddress(table, index);
  mem.write64(at, words[1]! >>> 0, words[0]! >>> 0, 'irte.qw0');
  mem.write64(at + 8, words[3]! >>> 0, words[2]! >>> 0, 'irte.qw1');
}

export function clearIrte(mem: PhysicalMemory, table: number, index: number): void {
  writeIrte(mem, table, index, [0, 0, 0, 0]);
}

// ---- register programming ----

/** Points the unit at a root table (RTADDR + GCMD.SRTP), in scalable or legacy format. */
export function setRootTable(unit: VtdUnit, rootTable: number, scalable: boolean): void {
  unit.writeRegister('RTADDR', U64.fromNumber(rootTable + (scalable ? 1 << 10 : 0)));
  unit.writeRegister('GCMD', gcmdWith(unit, GCMD.SRTP, true));
}

export function enableTranslation(unit: VtdUnit, on = true): void {
  unit.writeRegister('GCMD', gcmdWith(unit, GCMD.TE, on));
}

/** Sets up the invalidation queue (2^qs pages, 256-bit descriptors when `wide`) and enables it. */
export function enableQueuedInvalidation(unit: VtdUnit, base: number, qs = 0, wide = true): void {
  unit.writeRegister('IQT', 0);
  unit.writeRegister('IQA', U64.fromNumber(base + (wide ? 1 << 11 : 0) + qs));
  unit.writeRegister('GCMD', gcmdWith(unit, GCMD.QIE, true));
}

/**
 * Points the unit at an interrupt-remapping table of 2^(size+1) entries (IRTA, then GCMD.SIRTP), in x2APIC
 * mode (IRTA.EIME) or not. Software then invalidates the interrupt entry cache globally.
 */
export function setInterruptRemapTable(unit: VtdUnit, table: number, size: number, eime: boolean): void {
  unit.writeRegister('IRTA', U64.fromNumber(table + (eime ? 1 << 11 : 0) + (size & 0xf)));
  unit.writeRegister('GCMD', gcmdWith(unit, GCMD.SIRTP, true));
}

/** GCMD.IRE: interrupt remapping on or off. */
export function enableInterruptRemapping(unit: VtdUnit, on = true): void {
  unit.writeRegister('GCMD', gcmdWith(unit, GCMD.IRE, on));
}

/** GCMD.CFI: let compatibility-format interrupts through (xAPIC mode only) or block them. */
export function setCompatibilityFormatInterrupts(unit: VtdUnit, on: boolean): void {
  unit.writeRegister('GCMD', gcmdWith(unit, GCMD.CFI, on));
}

/** Sets up the page request queue (2^order pages) at `base`. */
export function enablePageRequests(unit: VtdUnit, base: number, order = 0): void {
  unit.writeRegister('PQH', 0);
  unit.writeRegister('PQA', U64.fromNumber(base + order));
}

/** GCMD value keeping the persistent enables from GSTS and changing one bit (one-shot bits are never kept). */
function gcmdWith(unit: VtdUnit, bit: number, on: boolean): number {
  const persistent = (1 << GCMD.TE) | (1 << GCMD.QIE) | (1 << GCMD.IRE) | (1 << GCMD.CFI);
  const sts = unit.readRegister('GSTS').lo & persistent;
  return (on ? sts | (1 << bit) : sts & ~(1 << bit)) >>> 0;
}

/**
 * Submits descriptors the way Linux's qi_submit_sync does: writes them at the tail, then moves IQT once.
 * Returns the queue index of the first descriptor. Each descriptor is given as (type, fields).
 */
export function submitDescriptors(unit: VtdUnit, descriptors: readonly { type: number; fields: Readonly<Record<string, number>> }[]): number {
  const q = unit.invalidationQueue;
  const words = q.descSize === 32 ? 4 : 2;
  const first = q.tail;
  let tail = q.tail;
  for (const d of descriptors) {
    writeEntry(unit.memory, q.base + tail * q.descSize, encodeDescriptor(d.type, d.fields, words as 2 | 4), 'inv-descriptor');
    tail = (tail + 1) % q.entries;
  }
  unit.writeRegister(Reg.IQT, tail * q.descSize);
  return first;
}
