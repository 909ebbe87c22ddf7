import { field, hexPad, POW2 } from '../u64';
import type { PriRequest } from '../hw/types';

/**
 * Invalidation-queue descriptors (VT-d spec 6.5.2; Linux iommu.h QI_* macros) and page-request descriptors
 * (spec 7.5.1; Linux prq.c), as data: encode, decode and validate. The queue, the driver model and the
 * readers all use these, so a field can only be wrong in one place.
 *
 * A descriptor is 2 (128-bit) or 4 (256-bit, IQA.DW = 1, required in scalable mode) 64-bit words, held as
 * 32-bit halves in memory order [qw0.lo, qw0.hi, qw1.lo, qw1.hi, ...]. The type is split:
 * qw0[3:0] | qw0[11:9] << 4.
 */

export const DescType = {
  CONTEXT_CACHE: 0x1,
  IOTLB: 0x2,
  DEVICE_TLB: 0x3,
  IEC: 0x4,
  WAIT: 0x5,
  PASID_IOTLB: 0x6,
  PASID_CACHE: 0x7,
  PASID_DEVICE_TLB: 0x8,
  PAGE_GROUP_RESPONSE: 0x9,
} as const;

/**
 * Linux's QI_PSTRM_RESP_TYPE: the Page Stream Response descriptor of VT-d rev 2.x extended mode, answering
 * streaming page requests. Rev 3.0 dropped extended mode, streaming requests and this descriptor, so it is
 * not in the descriptor set of the hardware modelled here: fetching it is an invalid descriptor type (IQE
 * with IQEI 3), as for 0x0 and 0xb-0x7f. Linux defines the constant and never submits it.
 */
export const PAGE_STREAM_RESPONSE_TYPE = 0xa;

/**
 * IQERCD.IQEI [3:0], why the hardware set FSTS.IQE. The codes, as Intel's IQERCD_REG register page
 * (edc.intel.com, 14th-generation Core "IQ Error Info register", offset 0xb0) words 0-5 and VirtualBox's
 * `VTDIQEI` enum (include/VBox/iommu-intel.h, read in cyberus-technology/virtualbox-kvm) names 0-7:
 *
 * | IQEI | meaning | this model raises it when |
 * |---|---|---|
 * | 0 | info not available (hardware older than IQEI) | never: the modelled unit reports the cause |
 * | 1 | invalid tail pointer | IQT.QT is at or beyond the end of the queue (IQA.QS) |
 * | 2 | descriptor fetch error | the descriptor's address cannot be read (above HAW or in a memory hole) |
 * | 3 | invalid descriptor type | a type outside the unit's set (0x0, 0xa-0x7f) |
 * | 4 | reserved field set in a valid descriptor type | a reserved bit, granularity or out-of-range field |
 * | 5 | invalid descriptor width for the translation mode | 128-bit descriptors (IQA.DW = 0) in scalable mode |
 * | 6 | queue tail misaligned | IQT bit 4 set while IQA.DW = 1 (256-bit descriptors) |
 * | 7 | invalid TTM | the latched RTADDR.TTM is a reserved value (10b, or 11b without abort-DMA mode) |
 *
 * VirtualBox's IQT write handler raises 6 exactly so (`VTDIQEI_QUEUE_TAIL_MISALIGNED` when DW is 256-bit and
 * bit 4 is set) and names the TTM case `kDmarDiag_Iqei_Ttm_Rsvd`; Intel's page in the corpus breaks off
 * after 5, so 6 and 7 are VirtualBox's reading of the spec, not checked against the spec's own words.
 */
export const IQEI = {
  NOT_AVAILABLE: 0,
  INVALID_TAIL: 1,
  FETCH_ERROR: 2,
  INVALID_TYPE: 3,
  RESERVED_FIELD: 4,
  INVALID_WIDTH: 5,
  TAIL_MISALIGNED: 6,
  INVALID_TTM: 7,
} as const;
export type IqeInfo = (typeof IQEI)[keyof typeof IQEI];

/**
 * Linux's `qi_type_string` names, used in `QI HEAD:`/`QI PRIOR:` lines. Linux looks them up by qw0[3:0]
 * only (see linuxQiTypeName); 0xa and the other values print "UNKNOWN".
 */
export const DESC_NAMES: Record<number, string> = {
  0x1: 'Context-cache Invalidation',
  0x2: 'IOTLB Invalidation',
  0x3: 'Device-TLB Invalidation',
  0x4: 'Interrupt Entry Cache Invalidation',
  0x5: 'Invalidation Wait',
  0x6: 'PASID-based IOTLB Invalidation',
  0x7: 'PASID-cache Invalidation',
  0x8: 'PASID-based Device-TLB Invalidation',
  0x9: 'Page Group Response',
};

/** `qi_type_string(desc->qw0 & 0xf)`: the name qi_dump_fault prints, from the low four type bits only. */
export function linuxQiTypeName(lo0: number): string {
  return DESC_NAMES[lo0 & 0xf] ?? 'UNKNOWN';
}

/** The short names the `intel_iommu:qi_submit` tracepoint prints. */
export const DESC_TRACE_NAMES: Record<number, string> = {
  0x1: 'cc_inv', 0x2: 'iotlb_inv', 0x3: 'dev_tlb_inv', 0x4: 'iec_inv', 0x5: 'inv_wait', 0x6: 'p_iotlb_inv',
  0x7: 'pc_inv', 0x8: 'p_dev_tlb_inv', 0x9: 'page_grp_resp',
};

interface DescField {
  readonly name: string;
  readonly word: number;
  readonly msb: number;
  readonly lsb: number;
}

interface DescLayout {
  readonly fields: readonly DescField[];
  /** Granularity values that are defined (others are reserved: IQE). */
  readonly granularities?: Readonly<Record<number, string>>;
}

const d = (name: string, word: number, msb: number, lsb: number): DescField => ({ name, word, msb, lsb });

// Field positions follow the Linux macros (QI_CC_*, QI_IOTLB_*, QI_DEV_IOTLB_*, QI_EIOTLB_*, QI_PC_*,
// QI_DEV_EIOTLB_*, QI_PGRP_*, QI_IWD_*, QI_IEC_*).
const LAYOUTS: Record<number, DescLayout> = {
  [DescType.CONTEXT_CACHE]: {
    fields: [d('G', 0, 5, 4), d('DID', 0, 31, 16), d('SID', 0, 47, 32), d('FM', 0, 49, 48)],
    granularities: { 1: 'global', 2: 'domain', 3: 'device' },
  },
  [DescType.IOTLB]: {
    fields: [d('G', 0, 5, 4), d('DW', 0, 6, 6), d('DR', 0, 7, 7), d('DID', 0, 31, 16), d('AM', 1, 5, 0), d('IH', 1, 6, 6), d('ADDR', 1, 63, 12)],
    granularities: { 1: 'global', 2: 'domain', 3: 'page' },
  },
  [DescType.DEVICE_TLB]: {
    fields: [d('PFSID_LO', 0, 15, 12), d('QDEP', 0, 20, 16), d('SID', 0, 47, 32), d('PFSID_HI', 0, 63, 52), d('S', 1, 0, 0), d('ADDR', 1, 63, 12)],
  },
  [DescType.IEC]: {
    fields: [d('G', 0, 4, 4), d('IM', 0, 31, 27), d('IIDX', 0, 47, 32)],
    granularities: { 0: 'global', 1: 'index' },
  },
  [DescType.WAIT]: {
    fields: [d('IF', 0, 4, 4), d('SW', 0, 5, 5), d('FN', 0, 6, 6), d('PD', 0, 7, 7), d('STATUS', 0, 63, 32), d('ADDR', 1, 63, 2)],
  },
  [DescType.PASID_IOTLB]: {
    fields: [d('G', 0, 5, 4), d('DID', 0, 31, 16), d('PASID', 0, 51, 32), d('AM', 1, 5, 0), d('IH', 1, 6, 6), d('ADDR', 1, 63, 12)],
    granularities: { 2: 'pasid', 3: 'page' },
  },
  [DescType.PASID_CACHE]: {
    fields: [d('G', 0, 5, 4), d('DID', 0, 31, 16), d('PASID', 0, 51, 32)],
    granularities: { 0: 'domain', 1: 'pasid', 3: 'global' },
  },
  [DescType.PASID_DEVICE_TLB]: {
    fields: [d('QDEP', 0, 8, 4), d('PFSID_LO', 0, 15, 12), d('SID', 0, 31, 16), d('PASID', 0, 51, 32), d('PFSID_HI', 0, 63, 52), d('G', 1, 0, 0), d('S', 1, 11, 11), d('ADDR', 1, 63, 12)],
  },
  // VT-d rev 4.0 and later, the revision this hardware follows: PP 4, RC 15:12, RID 31:16, PASID 51:32; LPIG 2
  // and PRGI 11:3 in qw1. Rev 4.0 reserves LPIG too, but hardware ignores it (Linux stopped setting it with
  // 4402e8f39d0b "iommu/vt-d: Remove LPIG from page group response descriptor", 6.18), so it stays a field
  // here: a kernel that still sets it must not get an IQE. Rev 3.x also had PDP (qw0 bit 5) and two private-data words in qw2/qw3, echoed from
  // the page request; rev 4.0 removed private data from page requests and responses, so qw0 bits 8:5 and
  // qw2/qw3 are reserved here (IQE, IQEI 4), as QEMU's reserved masks have them. Linux wrote PDP up to 6.9
  // (QI_PGRP_PDP, 5.10 iommu.h) and dropped it in 6.10: 621b7e54f288 "iommu/vt-d: Remove private data use in
  // fault message" ("According to Intel VT-d specification revision 4.0, "Private Data" field has been
  // removed from Page Request/Response").
  [DescType.PAGE_GROUP_RESPONSE]: {
    fields: [d('PP', 0, 4, 4), d('RC', 0, 15, 12), d('RID', 0, 31, 16), d('PASID', 0, 51, 32), d('LPIG', 1, 2, 2), d('PRGI', 1, 11, 3)],
  },
};

interface CompiledLayout extends DescLayout {
  readonly byName: ReadonlyMap<string, DescField>;
  /** Per 32-bit half (memory order, 4 qwords), the bits that belong to a field or to the type. */
  readonly defined: readonly number[];
}

const COMPILED = new Map<number, CompiledLayout>();
for (const [type, layout] of Object.entries(LAYOUTS)) {
  const defined = new Array<number>(8).fill(0);
  // Bit by bit into the 32-bit halves: fields may be wider than a double holds (ADDR 63:2, private data).
  const mark = (word: number, msb: number, lsb: number) => {
    for (let bit = lsb; bit <= msb; bit++) defined[word * 2 + (bit >> 5)]! |= 1 << (bit & 31);
  };
  mark(0, 3, 0);
  mark(0, 11, 9);
  for (const f of layout.fields) mark(f.word, f.msb, f.lsb);
  COMPILED.set(Number(type), { ...layout, byName: new Map(layout.fields.map((f) => [f.name, f])), defined });
}

/** The type field of a descriptor whose qw0 low half is `lo0`. */
export function descriptorType(lo0: number): number {
  return (lo0 & 0xf) | (((lo0 >>> 9) & 0x7) << 4);
}

export type DescWords = ArrayLike<number>;

export interface DecodedDescriptor {
  readonly type: number;
  readonly name: string;
  readonly traceName: string;
  readonly granularity: string;
  readonly fields: Record<string, number>;
  /** Why the hardware must reject it (IQE), or undefined when it is well-formed. */
  readonly invalid?: string;
  /** With `invalid`: the IQEI the hardware reports (invalid type, or a reserved field of a valid type). */
  readonly iqei?: IqeInfo;
}

/** Value of a field, at most 53 bits wide (private data words are reported as their low 53 bits). */
function get(w: DescWords, f: DescField): number {
  const width = f.msb - f.lsb + 1;
  const hi = w[f.word * 2 + 1]! >>> 0;
  const lo = w[f.word * 2]! >>> 0;
  return width > 52 ? field(hi, lo, Math.min(f.msb, f.lsb + 52), f.lsb) : field(hi, lo, f.msb, f.lsb);
}

/**
 * Decodes and validates a descriptor: a type outside the set (0x0, 0xa-0x7f: IQEI 3), a reserved
 * granularity, or any bit outside the defined fields and the type field (IQEI 4) is an invalid descriptor.
 * `words` is 2 or 4; in 256-bit mode qw2 and qw3 are reserved except where a type defines them.
 */
export function decodeDescriptor(w: DescWords, words: 2 | 4): DecodedDescriptor {
  const type = descriptorType(w[0]! >>> 0);
  const layout = COMPILED.get(type);
  const name = DESC_NAMES[type] ?? 'UNKNOWN';
  const traceName = DESC_TRACE_NAMES[type] ?? 'unknown';
  if (!layout) return { type, name, traceName, granularity: '', fields: {}, invalid: `unknown descriptor type 0x${type.toString(16)}`, iqei: IQEI.INVALID_TYPE };
  const fields: Record<string, number> = {};
  for (const f of layout.fields) if (f.word < words) fields[f.name] = get(w, f);
  let granularity = '';
  let invalid: string | undefined;
  if (layout.granularities) {
    const g = fields.G ?? 0;
    granularity = layout.granularities[g] ?? '';
    if (!granularity) invalid = `reserved granularity ${g}`;
  }
  // Reserved bits: whatever is neither a field nor the type must be zero.
  for (let word = 0; word < words && !invalid; word++) {
    const hi = (w[word * 2 + 1]! & ~layout.defined[word * 2 + 1]!) >>> 0;
    const lo = (w[word * 2]! & ~layout.defined[word * 2]!) >>> 0;
    if (hi !== 0 || lo !== 0) invalid = `reserved bits set in qw${word}: 0x${hexPad(hi, 8)}${hexPad(lo, 8)}`;
  }
  return { type, name, traceName, granularity, fields, ...(invalid ? { invalid, iqei: IQEI.RESERVED_FIELD } : {}) };
}

/**
 * Sets bits [msb:lsb] of 64-bit word `word` to `v` (< 2^53), where they are still zero: fields of a layout do
 * not overlap, so adding each half is setting it. Arithmetic, not shifts, because halves reach bit 31 and
 * values exceed 32 bits; no allocation, because every submitted descriptor comes through here.
 */
function put(w: number[], word: number, msb: number, lsb: number, v: number): void {
  const i = word * 2;
  if (lsb < 32) {
    const span = POW2[(msb < 31 ? msb : 31) - lsb + 1]!;
    w[i] = w[i]! + (v % span) * POW2[lsb]!;
    if (msb >= 32) w[i + 1] = w[i + 1]! + Math.floor(v / span);
  } else {
    w[i + 1] = w[i + 1]! + v * POW2[lsb - 32]!;
  }
}

/**
 * Builds a descriptor. `values` names fields of the type's layout; addresses (ADDR) are byte addresses
 * (page-aligned for invalidations, 4-byte aligned for the wait status address).
 */
export function encodeDescriptor(type: number, values: Readonly<Record<string, number>>, words: 2 | 4 = 4): number[] {
  const layout = COMPILED.get(type);
  if (!layout) throw new Error(`unknown descriptor type ${type}`);
  const w = new Array<number>(words * 2).fill(0);
  put(w, 0, 3, 0, type & 0xf);
  put(w, 0, 11, 9, type >> 4);
  for (const key in values) {
    const raw = values[key]!;
    // ADDR is a byte address; ADDR_PAGE gives the field itself (bits 63:12), for addresses beyond 2^53.
    const name = key === 'ADDR_PAGE' ? 'ADDR' : key;
    const f = layout.byName.get(name);
    if (!f) throw new Error(`${DESC_NAMES[type]} has no field ${name}`);
    if (f.word >= words) throw new Error(`${name} needs a 256-bit descriptor`);
    let v = raw;
    if (key === 'ADDR') v = type === DescType.WAIT ? raw / 4 : raw / 4096;
    if (!Number.isInteger(v) || v < 0 || v >= 2 ** Math.min(53, f.msb - f.lsb + 1)) throw new RangeError(`${name}=${raw} does not fit`);
    put(w, f.word, f.msb, f.lsb, v);
  }
  return w;
}

/** Device-TLB invalidation address with the size encoded the ATS way: S=1 and ones below the size bit. */
export function atsInvalidationAddress(addr: number, pages: number): { addr: number; s: 0 | 1 } {
  if (pages <= 1) return { addr, s: 0 };
  const size = pages * 4096;
  const base = Math.floor(addr / size) * size;
  return { addr: base + size / 2 - 4096, s: 1 };
}

/** The range an ATS-style address/S pair covers: S=0 is one page; S=1 extends to the lowest zero bit above bit 11. */
export function atsInvalidationRange(addr: number, s: number): { base: number; size: number } {
  const page = Math.floor(addr / 4096) * 4096;
  if (!s) return { base: page, size: 4096 };
  // The size is 2^(k+1) pages where k is the number of trailing one bits above bit 12 (bit 12 itself included).
  let k = 0;
  let v = page / 4096;
  while (v % 2 === 1) {
    k++;
    v = Math.floor(v / 2);
  }
  const size = 2 ** (k + 1) * 4096;
  return { base: Math.floor(page / size) * size, size };
}

/** The PFSID of a device-TLB descriptor, from its two halves. */
export function pfsidOf(fields: Record<string, number>): number {
  return (fields.PFSID_LO ?? 0) | ((fields.PFSID_HI ?? 0) << 4);
}

// ---- page requests ----

/**
 * A page request descriptor's content: the PCIe request (pasid undefined without PASID) and, in a descriptor
 * written by rev 3.x hardware, its private data.
 */
export interface PageRequest extends PriRequest {
  /** Rev 3.x: two 64-bit private data words as halves [lo0, hi0, lo1, hi1], or undefined. */
  readonly privateData?: readonly number[];
}

/**
 * The 32-byte page request descriptor the hardware writes into the PRQ (Linux `struct page_req_dsc`), in the
 * rev 4.0 layout this hardware follows: qw0 bit 9 (rev 3.x "private data present") and qw2/qw3 (rev 3.x
 * private data) are reserved and written as zero.
 */
export function encodePageRequest(r: PriRequest): number[] {
  const w = new Array<number>(8).fill(0);
  // qw0: type 1 [7:0], PASID present 8, RID [31:16], PASID [51:32], EXE 52, PM 53
  w[0] = (0x1 | (r.pasid !== undefined ? 1 << 8 : 0) | ((r.rid & 0xffff) << 16)) >>> 0;
  w[1] = ((r.pasid ?? 0) & 0xfffff) | (r.exec ? 1 << 20 : 0) | (r.priv ? 1 << 21 : 0);
  // qw1: RD 0, WR 1, LPIG 2, PRGI [11:3], ADDR [63:12]
  const page = Math.floor(r.address / 4096);
  w[2] = ((r.read ? 1 : 0) | (r.write ? 2 : 0) | (r.lastInGroup ? 4 : 0) | ((r.prgIndex & 0x1ff) << 3) | ((page & 0xfffff) << 12)) >>> 0;
  w[3] = Math.floor(page / 0x100000) >>> 0;
  return w;
}

/**
 * Decodes a page request descriptor of either era: bit 9 and qw2/qw3 are rev 3.x private data when bit 9 is
 * set (dumps of older hardware, Linux <= 6.9's `priv_data_present`); the rev 4.0 hardware modelled here
 * never sets it.
 */
export function decodePageRequest(w: DescWords): PageRequest & { type: number } {
  const lo0 = w[0]! >>> 0;
  const hi0 = w[1]! >>> 0;
  const lo1 = w[2]! >>> 0;
  const hi1 = w[3]! >>> 0;
  const hasPasid = ((lo0 >>> 8) & 1) === 1;
  const hasPriv = ((lo0 >>> 9) & 1) === 1;
  return {
    type: lo0 & 0xff,
    rid: lo0 >>> 16,
    ...(hasPasid ? { pasid: hi0 & 0xfffff } : {}),
    address: hi1 * 0x1_0000_0000 + ((lo1 & 0xffff_f000) >>> 0),
    read: (lo1 & 1) === 1,
    write: (lo1 & 2) === 2,
    exec: ((hi0 >>> 20) & 1) === 1,
    priv: ((hi0 >>> 21) & 1) === 1,
    lastInGroup: (lo1 & 4) === 4,
    prgIndex: (lo1 >>> 3) & 0x1ff,
    ...(hasPriv ? { privateData: [w[4]! >>> 0, w[5]! >>> 0, w[6]! >>> 0, w[7]! >>> 0] } : {}),
  };
}

/** PCIe Page Request Group response codes. */
export const ResponseCode = { SUCCESS: 0x0, INVALID_REQUEST: 0x1, RESPONSE_FAILURE: 0xf } as const;

export function responseCodeName(code: number): 'success' | 'invalid-request' | 'response-failure' | 'reserved' {
  return code === 0 ? 'success' : code === 1 ? 'invalid-request' : code === 0xf ? 'response-failure' : 'reserved';
}
