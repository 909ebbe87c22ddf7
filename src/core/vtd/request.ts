import type { DmaRequest } from '../hw/types';

/** A translation request in normalized form (numbers only): what the blocks of a unit pass each other. */
export interface Req {
  sid: number;
  hasPasid: boolean;
  pasid: number;
  hi: number;
  lo: number;
  write: boolean;
  exec: boolean;
  priv: boolean;
  kind: 'untranslated' | 'translation-request' | 'translated';
}

export const TWO_32 = 0x1_0000_0000;

export function newRequest(): Req {
  return { sid: 0, hasPasid: false, pasid: 0, hi: 0, lo: 0, write: false, exec: false, priv: false, kind: 'untranslated' };
}

/** Fills `into` (or a new request) from a DMA request; throws on an address that is not an exact integer. */
export function normalize(r: DmaRequest, into?: Req): Req {
  const q: Req = into ?? newRequest();
  const a = r.addr;
  if (typeof a === 'number') {
    if (!(a >= 0 && a <= Number.MAX_SAFE_INTEGER && a === Math.floor(a))) throw new RangeError(`DMA address ${a} is not an exact unsigned integer; pass a U64`);
    q.hi = a < TWO_32 ? 0 : Math.floor(a / TWO_32);
    q.lo = a >>> 0;
  } else {
    q.hi = a.hi;
    q.lo = a.lo;
  }
  q.sid = r.sid & 0xffff;
  q.hasPasid = r.pasid !== undefined;
  q.pasid = r.pasid ?? 0;
  q.write = r.write ?? false;
  q.exec = r.exec ?? false;
  q.priv = r.priv ?? false;
  q.kind = r.kind ?? 'untranslated';
  return q;
}

/** The request as events show it. */
export function requestFields(q: Req): { sid: number; pasid: number | null; address: string; access: 'read' | 'write' | 'exec' } {
  return { sid: q.sid, pasid: q.hasPasid ? q.pasid : null, address: '0x' + (q.hi * TWO_32 + q.lo).toString(16), access: q.exec ? 'exec' : q.write ? 'write' : 'read' };
}
