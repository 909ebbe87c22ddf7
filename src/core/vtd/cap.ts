import { U64, field, setField } from '../u64';

/**
 * The VT-d Capability (CAP, offset 0x08) and Extended Capability (ECAP, offset 0x10) registers, field by
 * field. Values are the raw register fields (so that decode then encode gives back the same bits); the
 * helpers below turn them into what they mean (domain count, address widths, byte offsets). Bits the model
 * does not name are kept in `otherBits`, so a real machine's value always round-trips exactly.
 */

interface FieldSpec {
  readonly name: string;
  readonly msb: number;
  readonly lsb: number;
  /** What the field means, for hovers and `iommu-lab` output. */
  readonly doc: string;
}

const f = (name: string, msb: number, lsb: number, doc: string): FieldSpec => ({ name, msb, lsb, doc });

export const CAP_FIELDS: readonly FieldSpec[] = [
  f('nd', 2, 0, 'Number of domains: 2^(4+2*ND) domain IDs'),
  f('afl', 3, 3, 'Advanced fault logging'),
  f('rwbf', 4, 4, 'Required write-buffer flushing'),
  f('plmr', 5, 5, 'Protected low-memory region'),
  f('phmr', 6, 6, 'Protected high-memory region'),
  f('cm', 7, 7, 'Caching mode: not-present and erroneous entries may be cached; software must invalidate after every change'),
  f('sagaw', 12, 8, 'Supported adjusted guest address widths (bit 1: 39-bit/3-level, bit 2: 48-bit/4-level, bit 3: 57-bit/5-level)'),
  f('mgaw', 21, 16, 'Maximum guest address width minus 1'),
  f('zlr', 22, 22, 'Zero-length read'),
  f('isoch', 23, 23, 'Isochrony'),
  f('fro', 33, 24, 'Fault-recording register offset, in 16-byte units'),
  f('sllps', 37, 34, 'Second-level large page support (bit 0: 2 MiB, bit 1: 1 GiB)'),
  f('psi', 39, 39, 'Page-selective invalidation'),
  f('nfr', 47, 40, 'Number of fault-recording registers minus 1'),
  f('mamv', 53, 48, 'Maximum address mask value for page-selective invalidation'),
  f('dwd', 54, 54, 'Write draining'),
  f('drd', 55, 55, 'Read draining'),
  f('fl1gp', 56, 56, 'First-level 1 GiB pages'),
  f('pi', 59, 59, 'Posted interrupts'),
  f('fl5lp', 60, 60, 'First-level 5-level paging'),
  f('ecmds', 61, 61, 'Enhanced command support'),
  f('esirtps', 62, 62, 'Enhanced set interrupt root table pointer support'),
  f('esrtps', 63, 63, 'Enhanced set root table pointer support'),
];

export const ECAP_FIELDS: readonly FieldSpec[] = [
  f('c', 0, 0, 'Page-walk coherency'),
  f('qi', 1, 1, 'Queued invalidation'),
  f('dt', 2, 2, 'Device-TLB (ATS) support'),
  f('ir', 3, 3, 'Interrupt remapping'),
  f('eim', 4, 4, 'Extended interrupt mode (x2APIC)'),
  f('pt', 6, 6, 'Pass-through'),
  f('sc', 7, 7, 'Snoop control'),
  f('iro', 17, 8, 'IOTLB register offset, in 16-byte units'),
  f('mhmv', 23, 20, 'Maximum handle mask value (interrupt entry cache invalidation)'),
  f('ecs', 24, 24, 'Extended context support (VT-d 2.x, removed)'),
  f('mts', 25, 25, 'Memory type support'),
  f('nest', 26, 26, 'Nested translation'),
  f('dis', 27, 27, 'Deferred invalidate support'),
  f('brokenPasid', 28, 28, 'The PASID implementation is broken (hardware says so)'),
  f('prs', 29, 29, 'Page request support'),
  f('ers', 30, 30, 'Execute request support'),
  f('srs', 31, 31, 'Supervisor request support'),
  f('nwfs', 33, 33, 'No write flag support'),
  f('eafs', 34, 34, 'Extended accessed flag support'),
  f('pss', 39, 35, 'PASID size supported minus 1 (19: 20-bit PASIDs)'),
  f('pasid', 40, 40, 'Process address space ID support'),
  f('dit', 41, 41, 'Device-TLB invalidation throttle'),
  f('pds', 42, 42, 'Page-request drain support'),
  f('smts', 43, 43, 'Scalable-mode translation support'),
  f('vcs', 44, 44, 'Virtual command support'),
  f('slads', 45, 45, 'Second-level accessed/dirty support'),
  f('slts', 46, 46, 'Second-level translation support (scalable mode)'),
  f('flts', 47, 47, 'First-level translation support'),
  f('smpwc', 48, 48, 'Scalable-mode page-walk coherency'),
  f('rps', 49, 49, 'RID_PASID support'),
  f('pms', 51, 51, 'Page-request message support'),
];

export interface VtdCap {
  nd: number; afl: number; rwbf: number; plmr: number; phmr: number; cm: number; sagaw: number; mgaw: number;
  zlr: number; isoch: number; fro: number; sllps: number; psi: number; nfr: number; mamv: number; dwd: number; drd: number;
  fl1gp: number; pi: number; fl5lp: number; ecmds: number; esirtps: number; esrtps: number;
  /** Set bits the model does not name, kept for an exact round trip. */
  otherBits: U64;
}

export interface VtdEcap {
  c: number; qi: number; dt: number; ir: number; eim: number; pt: number; sc: number; iro: number; mhmv: number;
  ecs: number; mts: number; nest: number; dis: number; brokenPasid: number; prs: number; ers: number; srs: number; nwfs: number; eafs: number; pss: number; pasid: number;
  dit: number; pds: number; smts: number; vcs: number; slads: number; slts: number; flts: number; smpwc: number;
  rps: number; pms: number;
  otherBits: U64;
}

function decode(fields: readonly FieldSpec[], v: U64): Record<string, number> & { otherBits: U64 } {
  const out: Record<string, number> = {};
  let [hi, lo] = [v.hi, v.lo];
  for (const s of fields) {
    out[s.name] = field(v.hi, v.lo, s.msb, s.lsb);
    [hi, lo] = setField(hi, lo, s.msb, s.lsb, 0);
  }
  return Object.assign(out, { otherBits: new U64(hi, lo) });
}

function encode(fields: readonly FieldSpec[], values: Record<string, number | U64>): U64 {
  const other = values.otherBits as U64 | undefined;
  let [hi, lo] = other ? [other.hi, other.lo] : [0, 0];
  for (const s of fields) {
    const value = values[s.name] as number;
    const width = s.msb - s.lsb + 1;
    if (!Number.isInteger(value) || value < 0 || value >= 2 ** width) {
      throw new RangeError(`${s.name}: ${value} does not fit in bits [${s.msb}:${s.lsb}]`);
    }
    [hi, lo] = setField(hi, lo, s.msb, s.lsb, value);
  }
  return new U64(hi, lo);
}

export function decodeCap(v: U64): VtdCap {
  return decode(CAP_FIELDS, v) as unknown as VtdCap;
}
export function encodeCap(c: VtdCap): U64 {
  return encode(CAP_FIELDS, c as unknown as Record<string, number | U64>);
}
export function decodeEcap(v: U64): VtdEcap {
  return decode(ECAP_FIELDS, v) as unknown as VtdEcap;
}
export function encodeEcap(e: VtdEcap): U64 {
  return encode(ECAP_FIELDS, e as unknown as Record<string, number | U64>);
}

// What the fields mean.
export const domainCount = (c: VtdCap): number => 2 ** (4 + 2 * c.nd);
export const maxGuestAddressWidth = (c: VtdCap): number => c.mgaw + 1;
/** Second-level address widths the unit supports: 39 (3-level), 48 (4-level), 57 (5-level). */
export const supportedAgaws = (c: VtdCap): number[] => [1, 2, 3].filter((b) => (c.sagaw >> b) & 1).map((b) => 30 + 9 * b);
export const faultRecordingOffset = (c: VtdCap): number => c.fro * 16;
export const faultRecordingCount = (c: VtdCap): number => c.nfr + 1;
export const iotlbRegisterOffset = (e: VtdEcap): number => e.iro * 16;
/** Number of PASIDs, as Linux computes max_pasids: 2 << PSS. */
export const pasidCount = (e: VtdEcap): number => (e.pasid ? 2 * 2 ** e.pss : 0);
export const secondLevelLargePages = (c: VtdCap): ('2M' | '1G')[] => [
  ...(c.sllps & 1 ? (['2M'] as const) : []),
  ...(c.sllps & 2 ? (['1G'] as const) : []),
];

/** One line per field: `name  value  meaning`, for `iommu-lab` and hovers. */
export function describeRegister(kind: 'cap' | 'ecap', v: U64): { name: string; value: number; doc: string }[] {
  const fields = kind === 'cap' ? CAP_FIELDS : ECAP_FIELDS;
  const decoded = decode(fields, v);
  return fields.map((s) => ({ name: s.name.toUpperCase(), value: decoded[s.name]!, doc: s.doc }));
}

/**
 * A unit description in the terms people think in; `capabilitiesOf` turns it into CAP and ECAP.
 * Everything is optional: the defaults describe a current scalable-mode server part.
 */
export interface VtdFeatures {
  scalableMode?: boolean;
  /** Second-level address widths supported (SAGAW). */
  agaws?: (39 | 48 | 57)[];
  /** Maximum guest address width (MGAW + 1). */
  mgaw?: number;
  secondLevelLargePages?: ('2M' | '1G')[];
  firstLevel1G?: boolean;
  firstLevel5Level?: boolean;
  cachingMode?: boolean;
  faultRecordingRegisters?: number;
  domainIdBits?: 4 | 6 | 8 | 10 | 12 | 14 | 16;
  pasidBits?: number;
  queuedInvalidation?: boolean;
  deviceTlb?: boolean;
  passThrough?: boolean;
  nested?: boolean;
  pageRequests?: boolean;
  executeRequests?: boolean;
  supervisorRequests?: boolean;
  firstLevel?: boolean;
  secondLevel?: boolean;
  pageWalkCoherent?: boolean;
  /** Second-level accessed/dirty bits (ECAP.SLADS): dirty tracking for second-stage domains. */
  secondLevelAccessDirty?: boolean;
  interruptRemapping?: boolean;
  /** ECAP.EIM: x2APIC mode (32-bit destinations) for interrupt remapping; defaults to interruptRemapping. */
  extendedInterruptMode?: boolean;
  /** CAP.PI: posted-format interrupt-remapping entries. */
  postedInterrupts?: boolean;
  pageSelectiveInvalidation?: boolean;
  /** ECAP.VCS: the virtual command registers (a vIOMMU offering PASID allocation to its guest). */
  virtualCommand?: boolean;
  maxAddressMask?: number;
}

/** FRCD registers and the IOTLB register sit right after the architectural registers in the 4 KiB page. */
const DEFAULT_FRO = 0x400 / 16;
const DEFAULT_IRO = 0x500 / 16;

export function capabilitiesOf(features: VtdFeatures = {}): { cap: U64; ecap: U64 } {
  const sm = features.scalableMode ?? true;
  const agaws = features.agaws ?? [48];
  const flag = (v: boolean | undefined, dflt: boolean) => ((v ?? dflt) ? 1 : 0);
  const cap: VtdCap = {
    nd: ((features.domainIdBits ?? 16) - 4) / 2,
    afl: 0, rwbf: 0, plmr: 0, phmr: 0,
    cm: flag(features.cachingMode, false),
    sagaw: agaws.reduce((m, w) => m | (1 << ((w - 30) / 9)), 0),
    mgaw: (features.mgaw ?? Math.max(...agaws)) - 1,
    zlr: 1,
    isoch: 0,
    fro: DEFAULT_FRO,
    sllps: (features.secondLevelLargePages ?? ['2M', '1G']).reduce((m, s) => m | (s === '2M' ? 1 : 2), 0),
    psi: flag(features.pageSelectiveInvalidation, true),
    nfr: (features.faultRecordingRegisters ?? 8) - 1,
    mamv: features.maxAddressMask ?? 0x3f,
    dwd: 1, drd: 1,
    fl1gp: flag(features.firstLevel1G, true),
    pi: flag(features.postedInterrupts, false),
    fl5lp: flag(features.firstLevel5Level, false),
    ecmds: 0, esirtps: 0, esrtps: 0,
    otherBits: U64.ZERO,
  };
  const pasidBits = features.pasidBits ?? (sm ? 20 : 0);
  const ecap: VtdEcap = {
    c: flag(features.pageWalkCoherent, true),
    qi: flag(features.queuedInvalidation, true),
    dt: flag(features.deviceTlb, true),
    ir: flag(features.interruptRemapping, true),
    eim: flag(features.extendedInterruptMode ?? features.interruptRemapping, true),
    pt: flag(features.passThrough, true),
    sc: 1,
    iro: DEFAULT_IRO,
    mhmv: 0xf,
    ecs: 0,
    mts: 0,
    dis: 0,
    brokenPasid: 0,
    nest: flag(features.nested, sm),
    prs: flag(features.pageRequests, sm),
    ers: flag(features.executeRequests, false),
    srs: flag(features.supervisorRequests, false),
    nwfs: 0, eafs: 0,
    pss: pasidBits > 0 ? pasidBits - 1 : 0,
    pasid: pasidBits > 0 ? 1 : 0,
    dit: 0,
    pds: flag(features.pageRequests, sm),
    smts: sm ? 1 : 0,
    vcs: flag(features.virtualCommand, false),
    slads: flag(features.secondLevelAccessDirty, false),
    slts: flag(features.secondLevel, sm),
    flts: flag(features.firstLevel, sm),
    smpwc: flag(features.pageWalkCoherent, sm),
    rps: sm ? 1 : 0,
    pms: 0,
    otherBits: U64.ZERO,
  };
  return { cap: encodeCap(cap), ecap: encodeEcap(ecap) };
}
