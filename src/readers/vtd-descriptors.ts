import { DESC_TRACE_NAMES, DescType, decodeDescriptor, decodePageRequest, pfsidOf } from '../core/vtd/descriptors';
import { U64 } from '../core/u64';
import { ridToDevice } from './hex';

/**
 * VT-d descriptors as logs and traces print them (QI errors, `qi_submit`, PRQ messages, `prq_report`):
 * the fields come from core/vtd/descriptors.ts; this adds what an event needs: the exact 64-bit words
 * and addresses as hex, and the device, PASID and address the descriptor targets.
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
  return out;
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
  privateDataPresent: boolean;
  /** LPIG with neither read nor write: the end of a PASID's outstanding requests, which needs no response. */
  stopMarker: boolean;
}

/** The first two qwords of a page request descriptor (Linux `struct page_req_dsc`). */
export function describePageRequest(qw0: U64, qw1: U64): PageRequestWords {
  const r = decodePageRequest([qw0.lo, qw0.hi, qw1.lo, qw1.hi, 0, 0, 0, 0]);
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
    privateDataPresent: qw0.bit(9),
    stopMarker: r.lastInGroup && !r.read && !r.write,
  };
}
