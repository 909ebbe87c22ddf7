import { DESC_TRACE_NAMES, DescType, decodeDescriptor, decodePageRequest, pfsidOf } from '../core/vtd/descriptors';
import { U64 } from '../core/u64';
import { ridToDevice } from './hex';

/**
 * VT-d descriptors as logs and traces print them (QI errors, `qi_submit`, PRQ messages, `prq_report`, the
 * debugfs invalidation queue): the fields come from core/vtd/descriptors.ts; this adds what an event needs:
 * the exact 64-bit words and addresses as hex, and the device, PASID and address the descriptor targets.
 *
 * Page requests and page group responses changed with VT-d rev 4.0, which removed private data (and the
 * response's LPIG). A dump does not say which revision the hardware follows, so both readings are given
 * (`eras`): rev 3.x, as Linux wrote and read them up to 6.9 (QI_PGRP_PDP and `priv_data_present`, 5.10's
 * include/linux/intel-iommu.h and svm.c), and rev 4.0 and later, the layout the modelled hardware follows,
 * where those bits are reserved. Linux changed sides in two steps:
 * - 6.10: 621b7e54f288 "iommu/vt-d: Remove private data use in fault message" (no more QI_PGRP_PDP, the
 *   request's bit 9 became reserved); checked: the 6.1 source has QI_PGRP_PDP, the 6.12 source does not,
 *   and the linux-next revision list carries it with the cache-tag series (446a68c58d2e) of 6.10;
 * - 6.18: 4402e8f39d0b "iommu/vt-d: Remove LPIG from page group response descriptor" ("Bit 66 ... used to
 *   be the LPIG ... marked as Reserved since Specification 4.0 ... Existing hardware all treats bit 66 ...
 *   as ignored"), in "Intel IOMMU updates for v6.18" and the 6.17.y stable review; checked: its patch mail.
 */

export interface QiDescriptor {
  type: number;
  /** `qi_type_string`'s name (what `QI HEAD:` prints), or UNKNOWN. */
  name: string;
  /** The `qi_submit` tracepoint's name. */
  traceName: string;
  granularity: string;
  qw0: string;
  qw1: string;
  qw2?: string;
  qw3?: string;
  fields: Record<string, number>;
  /** Why the hardware would reject it (IQE), when it would. */
  invalid?: string;
  device: string | null;
  pasid: number | null;
  address: string | null;
  /**
   * A wait descriptor's status address: the byte address the status dword is written to. Its field holds
   * bits 63:2 of the address (qw1[63:2]), so the address is qw1 with its two low bits cleared.
   */
  statusAddress?: string;
  /** A page group response read both ways (see the header). */
  eras?: PageGroupResponseEras;
}

/**
 * A page group response in the two layouts it has had. `invalid` of the descriptor itself is the modelled
 * (rev 4.0) hardware's verdict; these say what each revision makes of the same bits.
 */
export interface PageGroupResponseEras {
  /** Rev 3.x: PDP (qw0 bit 5) says qw2/qw3 echo the request's private data; LPIG (qw1 bit 2) is a field. */
  readonly rev3: {
    readonly pdp: boolean;
    readonly lpig: boolean;
    /** qw2 and qw3 when PDP is set in a 256-bit descriptor, else null. */
    readonly privateData: readonly [string, string] | null;
    /** Non-zero bits that are reserved in rev 3.x too (qw0 bits 8:6, qw2/qw3 without PDP). */
    readonly reserved: readonly string[];
  };
  /** Rev 4.0 and later: qw0 bits 8:5, qw1 bit 2 and qw2/qw3 are reserved; each non-zero one is named. */
  readonly rev4: { readonly reserved: readonly string[] };
}

/** `0x` + hex of the byte address of page frame `pfn`, exact beyond 2^53. */
function pageAddress(pfn: number): string {
  return pfn === 0 ? '0x0' : '0x' + pfn.toString(16) + '000';
}

const halves = (words: U64[]) => words.flatMap((w) => [w.lo, w.hi]);

export function qiTypeFromTraceName(name: string): number | undefined {
  for (const [code, trace] of Object.entries(DESC_TRACE_NAMES)) if (trace === name) return Number(code);
  return undefined;
}

export function describeQiDescriptor(words: U64[]): QiDescriptor {
  const d = decodeDescriptor(halves(words), words.length >= 4 ? 4 : 2);
  const f = d.fields;
  const out: QiDescriptor = {
    type: d.type,
    name: d.name,
    traceName: d.traceName,
    granularity: d.granularity,
    qw0: words[0]!.toString(),
    qw1: words[1]!.toString(),
    fields: f,
    device: null,
    pasid: null,
    address: null,
  };
  if (words[2]) out.qw2 = words[2].toString();
  if (words[3]) out.qw3 = words[3].toString();
  if (d.invalid) out.invalid = d.invalid;
  const sid = f.SID ?? f.RID;
  const deviceSelective = d.type !== DescType.CONTEXT_CACHE || d.granularity === 'device';
  if (sid !== undefined && deviceSelective) out.device = ridToDevice(sid);
  const pasidSelective = d.type === DescType.PASID_CACHE ? d.granularity === 'pasid' : d.type === DescType.PAGE_GROUP_RESPONSE ? f.PP === 1 : true;
  if (f.PASID !== undefined && pasidSelective) out.pasid = f.PASID;
  const pageSelective = d.type === DescType.IOTLB || d.type === DescType.PASID_IOTLB ? d.granularity === 'page' : true;
  if (f.ADDR !== undefined && d.type !== DescType.WAIT && pageSelective) out.address = pageAddress(f.ADDR);
  if (d.type === DescType.WAIT && f.SW === 1) out.statusAddress = new U64(words[1]!.hi, (words[1]!.lo & ~3) >>> 0).toString();
  if (f.PFSID_LO !== undefined) f.PFSID = pfsidOf(f);
  if (d.type === DescType.PAGE_GROUP_RESPONSE) out.eras = pageGroupResponseEras(words);
  return out;
}

const hex = (n: number) => '0x' + n.toString(16);

function pageGroupResponseEras(words: U64[]): PageGroupResponseEras {
  const [qw0, qw1, qw2, qw3] = words as [U64, U64, U64?, U64?];
  const pdp = qw0.bit(5);
  const lpig = qw1.bit(2);
  const high = qw0.field(8, 6);
  const tail = [qw2, qw3].map((w, i) => (w && !w.isZero() ? `qw${i + 2} = ${w.toString()}` : null));
  const rev3: string[] = [];
  if (high !== 0) rev3.push(`qw0[8:6] = ${hex(high)}`);
  if (!pdp) for (const t of tail) if (t) rev3.push(`${t} without PDP`);
  const rev4: string[] = [];
  const bits = qw0.field(8, 5);
  if (bits !== 0) rev4.push(`qw0[8:5] = ${hex(bits)}${pdp ? ' (rev 3.x PDP)' : ''}`);
  if (lpig) rev4.push('qw1[2] (rev 3.x LPIG; hardware ignores it, Linux sets it up to 6.17)');
  for (const t of tail) if (t) rev4.push(t);
  return {
    rev3: { pdp, lpig, privateData: pdp && qw2 && qw3 ? [qw2.toString(), qw3.toString()] : null, reserved: rev3 },
    rev4: { reserved: rev4 },
  };
}

export interface PageRequestWords {
  qw0: string;
  qw1: string;
  rid: number;
  pasid: number | null;
  /** Exact, from qw1[63:12]: a non-canonical address is exactly what some PRQ messages report. */
  address: string;
  read: boolean;
  write: boolean;
  exec: boolean;
  priv: boolean;
  lastInGroup: boolean;
  prgIndex: number;
  /** Qw0 bit 9: rev 3.x "private data present" (Linux <= 6.9 `priv_data_present`); reserved from rev 4.0. */
  privateDataPresent: boolean;
  /** LPIG with neither read nor write: the end of a PASID's outstanding requests, which needs no response. */
  stopMarker: boolean;
  /** The same words in both revisions (see the header). */
  eras: {
    /** Rev 3.x: qw0 bits 15:10 reserved; with bit 9, qw2/qw3 (when printed) are the private data. */
    rev3: { privateData: readonly [string, string] | null; reserved: readonly string[] };
    /** Rev 4.0 and later: qw0 bits 15:9 and qw2/qw3 reserved (6.12's `struct page_req_dsc`: `rsvd:7`, `qw_2`, `qw_3`). */
    rev4: { reserved: readonly string[] };
  };
}

/**
 * A page request descriptor (Linux `struct page_req_dsc`): the first two qwords, which is all the PRQ
 * messages print (`%08llx %08llx`), and qw2/qw3 when the source has them (a PRQ dump).
 */
export function describePageRequest(qw0: U64, qw1: U64, qw2?: U64, qw3?: U64): PageRequestWords {
  const r = decodePageRequest([qw0.lo, qw0.hi, qw1.lo, qw1.hi, 0, 0, 0, 0]);
  const pdp = qw0.bit(9);
  const tail = [qw2, qw3].map((w, i) => (w && !w.isZero() ? `qw${i + 2} = ${w.toString()}` : null));
  const rev3: string[] = [];
  const high = qw0.field(15, 10);
  if (high !== 0) rev3.push(`qw0[15:10] = ${hex(high)}`);
  if (!pdp) for (const t of tail) if (t) rev3.push(`${t} without private data present`);
  const rev4: string[] = [];
  const bits = qw0.field(15, 9);
  if (bits !== 0) rev4.push(`qw0[15:9] = ${hex(bits)}${pdp ? ' (rev 3.x private data present)' : ''}`);
  for (const t of tail) if (t) rev4.push(t);
  return {
    qw0: qw0.toString(),
    qw1: qw1.toString(),
    rid: r.rid,
    pasid: r.pasid ?? null,
    address: pageAddress(qw1.field(63, 12)),
    read: r.read,
    write: r.write,
    exec: r.exec,
    priv: r.priv,
    lastInGroup: r.lastInGroup,
    prgIndex: r.prgIndex,
    privateDataPresent: pdp,
    stopMarker: r.lastInGroup && !r.read && !r.write,
    eras: {
      rev3: { privateData: pdp && qw2 && qw3 ? [qw2.toString(), qw3.toString()] : null, reserved: rev3 },
      rev4: { reserved: rev4 },
    },
  };
}
