import { field, hexPad, setField } from '../u64';

/**
 * The binary layouts of the VT-d translation structures (spec chapter 9; Linux iommu.h/pasid.h; QEMU
 * intel_iommu_internal.h), as tables. One definition serves decoding for walk traces, reserved-bit checks
 * in the walker, and encoding for the driver model and tests, so the three cannot disagree.
 *
 * Entries are arrays of 32-bit words in memory order: [qw0.lo, qw0.hi, qw1.lo, qw1.hi, ...].
 * Bit numbers in a FieldDef are within the field's 64-bit word (Linux's val[n] view).
 */

export interface FieldDef {
  readonly name: string;
  readonly word: number;
  readonly msb: number;
  readonly lsb: number;
  /** `address` fields hold bits [51:12] of a physical address and decode to a hex address. */
  readonly kind: 'flag' | 'number' | 'address';
}

export interface Layout {
  readonly name: string;
  /** Number of 64-bit words. */
  readonly words: number;
  readonly fields: readonly FieldDef[];
  /** Bits that must be zero, per 64-bit word, as [msb, lsb] ranges. */
  readonly reserved: readonly (readonly [word: number, msb: number, lsb: number])[];
  /** The same as masks over the 32-bit halves, for the walker's hot path. */
  readonly reservedMasks: readonly number[];
}

function layout(l: Omit<Layout, 'reservedMasks'>): Layout {
  return { ...l, reservedMasks: reservedMasks(l.reserved, l.words) };
}

const flag = (name: string, word: number, bit: number): FieldDef => ({ name, word, msb: bit, lsb: bit, kind: 'flag' });
const num = (name: string, word: number, msb: number, lsb: number): FieldDef => ({ name, word, msb, lsb, kind: 'number' });
const addr = (name: string, word: number): FieldDef => ({ name, word, msb: 51, lsb: 12, kind: 'address' });

export const ROOT_LEGACY: Layout = layout({
  name: 'root-entry',
  words: 2,
  fields: [flag('P', 0, 0), addr('CTP', 0)],
  reserved: [[0, 11, 1], [0, 63, 52], [1, 63, 0]],
});

export const ROOT_SCALABLE: Layout = layout({
  name: 'sm-root-entry',
  words: 2,
  fields: [flag('LP', 0, 0), addr('LCTP', 0), flag('UP', 1, 0), addr('UCTP', 1)],
  reserved: [[0, 11, 1], [0, 63, 52], [1, 11, 1], [1, 63, 52]],
});

export const CONTEXT_LEGACY: Layout = layout({
  name: 'context-entry',
  words: 2,
  fields: [
    flag('P', 0, 0), flag('FPD', 0, 1), num('TT', 0, 3, 2), addr('SLPTPTR', 0),
    num('AW', 1, 2, 0), num('AVAIL', 1, 6, 3), num('DID', 1, 23, 8),
  ],
  reserved: [[0, 11, 4], [0, 63, 52], [1, 7, 7], [1, 63, 24]],
});

export const CONTEXT_SCALABLE: Layout = layout({
  name: 'sm-context-entry',
  words: 4,
  fields: [
    flag('P', 0, 0), flag('FPD', 0, 1), flag('DTE', 0, 2), flag('PASIDE', 0, 3), flag('PRE', 0, 4),
    num('PDTS', 0, 11, 9), addr('PASIDDIRPTR', 0),
    num('RID_PASID', 1, 19, 0), flag('RID_PRIV', 1, 20),
  ],
  reserved: [[0, 8, 5], [0, 63, 52], [1, 63, 21], [2, 63, 0], [3, 63, 0]],
});

export const PASID_DIR_ENTRY: Layout = layout({
  name: 'pasid-dir-entry',
  words: 1,
  fields: [flag('P', 0, 0), flag('FPD', 0, 1), addr('SMPTBLPTR', 0)],
  reserved: [[0, 11, 2], [0, 63, 52]],
});

export const PGTT = { FIRST_LEVEL: 1, SECOND_LEVEL: 2, NESTED: 3, PASS_THROUGH: 4 } as const;
export const PGTT_NAMES: Record<number, string> = { 1: 'first-level', 2: 'second-level', 3: 'nested', 4: 'pass-through' };

export const PASID_ENTRY: Layout = layout({
  name: 'pasid-entry',
  words: 8,
  fields: [
    flag('P', 0, 0), flag('FPD', 0, 1), num('AW', 0, 4, 2), flag('SLEE', 0, 5), num('PGTT', 0, 8, 6), flag('SSADE', 0, 9),
    addr('SLPTPTR', 0), num('DID', 1, 15, 0), flag('PWSNP', 1, 23), flag('PGSNP', 1, 24), flag('CD', 1, 25), flag('EMTE', 1, 26),
    num('EMT', 1, 29, 27), flag('PWT', 1, 30), flag('PCD', 1, 31), num('PAT', 1, 63, 32),
    flag('SRE', 2, 0), flag('ERE', 2, 1), num('FLPM', 2, 3, 2), flag('WPE', 2, 4), flag('NXE', 2, 5), flag('SMEP', 2, 6),
    flag('EAFE', 2, 7), addr('FLPTPTR', 2),
  ],
  reserved: [[0, 11, 10], [0, 63, 52], [1, 22, 16], [2, 11, 8], [2, 63, 52], [3, 63, 0], [4, 63, 0], [5, 63, 0], [6, 63, 0], [7, 63, 0]],
});

/** Second-level (EPT-like) paging entry. Bits 10, 52-61 and 63 are ignored by hardware. */
export const SL_PTE: Layout = layout({
  name: 'sl-pte',
  words: 1,
  fields: [
    flag('R', 0, 0), flag('W', 0, 1), flag('X', 0, 2), num('EMT', 0, 5, 3), flag('IPAT', 0, 6), flag('PS', 0, 7),
    flag('A', 0, 8), flag('D', 0, 9), flag('SNP', 0, 11), addr('ADDR', 0), flag('TM', 0, 62),
  ],
  reserved: [],
});

/** First-level (IA-32e) paging entry. */
export const FL_PTE: Layout = layout({
  name: 'fl-pte',
  words: 1,
  fields: [
    flag('P', 0, 0), flag('RW', 0, 1), flag('US', 0, 2), flag('PWT', 0, 3), flag('PCD', 0, 4), flag('A', 0, 5),
    flag('D', 0, 6), flag('PS', 0, 7), flag('G', 0, 8), flag('EA', 0, 10), addr('ADDR', 0), flag('XD', 0, 63),
  ],
  reserved: [],
});

/**
 * Interrupt remapping table entry, remapped format (IM = 0): where an interrupt from SID goes. Read by the
 * interrupt-remapping hardware (interrupt-remap.ts), written by the driver, shown by debugfs. In xAPIC mode
 * (IRTA.EIME = 0) only DST[15:8] is used and the rest of DST is reserved.
 */
export const IRTE_REMAPPED: Layout = layout({
  name: 'irte',
  words: 2,
  fields: [
    flag('P', 0, 0), flag('FPD', 0, 1), flag('DM', 0, 2), flag('RH', 0, 3), flag('TM', 0, 4), num('DLM', 0, 7, 5),
    num('AVAIL', 0, 11, 8), flag('IM', 0, 15), num('V', 0, 23, 16), num('DST', 0, 63, 32),
    num('SID', 1, 15, 0), num('SQ', 1, 17, 16), num('SVT', 1, 19, 18),
  ],
  reserved: [[0, 14, 12], [0, 31, 24], [1, 63, 20]],
});

/** Interrupt remapping table entry, posted format (IM = 1): the interrupt is posted to a descriptor at PDA. */
export const IRTE_POSTED: Layout = layout({
  name: 'irte-posted',
  words: 2,
  fields: [
    flag('P', 0, 0), flag('FPD', 0, 1), num('AVAIL', 0, 11, 8), flag('URG', 0, 14), flag('IM', 0, 15), num('VV', 0, 23, 16),
    num('PDA_L', 0, 63, 38), num('SID', 1, 15, 0), num('SQ', 1, 17, 16), num('SVT', 1, 19, 18), num('PDA_H', 1, 63, 32),
  ],
  reserved: [[0, 7, 2], [0, 13, 12], [0, 37, 24], [1, 31, 20]],
});

/**
 * Posted-interrupt descriptor (64 bytes, 64-byte aligned; spec 9.12, Linux `struct pi_desc` in
 * arch/x86/include/asm/posted_intr.h): PIR, one bit per vector, in bits 255:0 (qw0-qw3, vector n at bit n);
 * then ON (256), SN (257), NV (279:272) and NDST (319:288) in qw4. PIR is 256 bits wide, so it is not a field
 * here (posted-interrupt.ts lists its set vectors); the raw words show it.
 */
export const PI_DESCRIPTOR: Layout = layout({
  name: 'posted-interrupt-descriptor',
  words: 8,
  fields: [flag('ON', 4, 0), flag('SN', 4, 1), num('NV', 4, 23, 16), num('NDST', 4, 63, 32)],
  reserved: [[4, 15, 2], [4, 31, 24], [5, 63, 0], [6, 63, 0], [7, 63, 0]],
});

/** Bit masks of the paging-entry bits the walker tests, as (lo-word mask) or (hi-word mask). */
export const SLB = { R: 1, W: 2, X: 4, PS: 0x80, A: 0x100, D: 0x200, SNP: 0x800 } as const;
export const FLB = { P: 1, RW: 2, US: 4, A: 0x20, D: 0x40, PS: 0x80, EA: 0x400, XD_HI: 0x8000_0000 } as const;

export type Words = ArrayLike<number>;

const NONE: string[] = [];

/** The value of one field of an entry (flags as 0/1; addresses as numbers). */
export function getField(w: Words, f: FieldDef): number {
  const lo = w[f.word * 2]! >>> 0;
  const hi = w[f.word * 2 + 1]! >>> 0;
  const v = field(hi, lo, f.msb, f.lsb);
  return f.kind === 'address' ? v * 4096 : v;
}

/** Every field of an entry, decoded for a walk trace: flags as booleans, addresses as hex. */
export function decodeEntry(layout: Layout, w: Words): Record<string, number | boolean | string> {
  const out: Record<string, number | boolean | string> = {};
  for (const f of layout.fields) {
    const v = getField(w, f);
    out[f.name] = f.kind === 'flag' ? v === 1 : f.kind === 'address' ? '0x' + v.toString(16) : v;
  }
  return out;
}

/** Per 64-bit word, the (lo, hi) masks of a layout's reserved bits, in memory order. */
function reservedMasks(reserved: Layout['reserved'], words: number): number[] {
  const m = new Array<number>(words * 2).fill(0);
  for (const [word, msb, lsb] of reserved) {
    const [hi, lo] = setField(m[word * 2 + 1]!, m[word * 2]!, msb, lsb, 2 ** Math.min(53, msb - lsb + 1) - 1);
    // setField writes at most 53 bits; wider ranges (whole reserved words) are all ones.
    m[word * 2] = msb - lsb + 1 > 53 ? 0xffff_ffff : lo;
    m[word * 2 + 1] = msb - lsb + 1 > 53 ? 0xffff_ffff : hi;
  }
  return m;
}

/** Names of the reserved ranges that are not zero, e.g. `qw0[11:1]`. Empty when the entry is clean. */
export function reservedViolations(layout: Layout, w: Words): string[] {
  // The hot path: a clean entry costs one AND per 32-bit half.
  const masks = layout.reservedMasks;
  let any = 0;
  for (let i = 0; i < masks.length; i++) any |= w[i]! & masks[i]!;
  if (any === 0) return NONE;
  const bad: string[] = [];
  for (const [word, msb, lsb] of layout.reserved) {
    if (field(w[word * 2 + 1]! >>> 0, w[word * 2]! >>> 0, msb, lsb) !== 0) bad.push(`qw${word}[${msb}:${lsb}]`);
  }
  return bad;
}

/** Builds an entry from field values (flags as booleans or 0/1, addresses as page-aligned numbers). */
const fieldIndex = new WeakMap<Layout, ReadonlyMap<string, FieldDef>>();

export function encodeEntry(layout: Layout, values: Readonly<Record<string, number | boolean>>): number[] {
  const w = new Array<number>(layout.words * 2).fill(0);
  let byName = fieldIndex.get(layout);
  if (!byName) fieldIndex.set(layout, (byName = new Map(layout.fields.map((f) => [f.name, f]))));
  for (const name in values) {
    const value = values[name]!;
    const f = byName.get(name);
    if (!f) throw new Error(`${layout.name} has no field ${name}`);
    let v = typeof value === 'boolean' ? (value ? 1 : 0) : value;
    if (f.kind === 'address') {
      if (v % 4096 !== 0) throw new RangeError(`${layout.name}.${name}: 0x${v.toString(16)} is not 4 KiB aligned`);
      v /= 4096;
    }
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** (f.msb - f.lsb + 1)) throw new RangeError(`${layout.name}.${name}: ${value} does not fit`);
    const [hi, lo] = setField(w[f.word * 2 + 1]!, w[f.word * 2]!, f.msb, f.lsb, v);
    w[f.word * 2] = lo;
    w[f.word * 2 + 1] = hi;
  }
  return w;
}

/** The 64-bit words of an entry as 16-digit hex strings, lowest word first (as traces and debugfs show them). */
export function rawWords(w: Words, words: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < words; i++) out.push(hexPad(w[i * 2 + 1]! >>> 0, 8) + hexPad(w[i * 2]! >>> 0, 8));
  return out;
}
