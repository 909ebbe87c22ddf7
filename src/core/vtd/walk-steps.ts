/** The walk-trace steps the translation block adds around walk.ts's own: notes, table entries, cache hits. */
import type { WalkStep } from '../hw/types';
import type { IotlbBucket, PwcEntry, TlbEntry } from './caches';
import { decodeEntry, type Layout, PASID_ENTRY, rawWords } from './structures';

/** `bb:dd.f` of a requester ID. */
export function bdf(sid: number): string {
  return `${(sid >>> 8).toString(16).padStart(2, '0')}:${((sid >>> 3) & 0x1f).toString(16).padStart(2, '0')}.${sid & 7}`;
}

export function note(structure: string, check: string, ok: boolean): WalkStep {
  return { structure, raw: [], fields: {}, check, ok };
}

export function entryStep(layout: Layout, structure: string, table: number, index: number, words: ArrayLike<number>, check: string, ok: boolean): WalkStep {
  const size = layout.words * 8;
  return {
    structure,
    table: '0x' + table.toString(16),
    index,
    entryAddress: '0x' + (table + index * size).toString(16),
    raw: rawWords(words, layout.words),
    fields: decodeEntry(layout, words),
    check,
    ok,
  };
}

export function cachedEntryStep(layout: Layout, addr: number, words: ArrayLike<number>, cache: 'context-cache' | 'pasid-cache', fault: number, pasid?: number): WalkStep {
  return {
    structure: layout === PASID_ENTRY ? 'pasid-entry' : 'context-entry',
    entryAddress: '0x' + addr.toString(16),
    raw: words.length ? rawWords(words, layout.words) : [],
    fields: words.length ? decodeEntry(layout, words) : {},
    check: fault ? `cached not-present entry (fault 0x${fault.toString(16)}), used without reading memory` : `from the ${cache}${pasid !== undefined ? ` (PASID 0x${pasid.toString(16)})` : ''}`,
    ok: fault === 0,
    cached: cache,
  };
}

export function tlbStep(e: TlbEntry, b: IotlbBucket): WalkStep {
  return {
    structure: 'iotlb',
    raw: [],
    fields: { DID: b.did, ...(b.pasid >= 0 ? { PASID: b.pasid } : {}), mode: b.mode, page: '0x' + (e.vpn * e.size).toString(16), size: e.size, output: '0x' + e.output.toString(16) },
    check: e.fault ? `cached not-present translation (fault 0x${e.fault.toString(16)})` : `IOTLB hit: 0x${(e.vpn * e.size).toString(16)} -> 0x${e.output.toString(16)}`,
    ok: e.fault === 0,
    cached: 'iotlb',
  };
}

export function pwcStep(p: PwcEntry, level: number, mode: string): WalkStep {
  const prefix = mode === 'sl' ? 'sl' : 'fl';
  const names = ['', 'pte', 'pde', 'pdpe', 'pml4e', 'pml5e'];
  return {
    structure: `${prefix}-${names[level]}`,
    level,
    entryAddress: '0x' + p.entryAddr.toString(16),
    raw: rawWords(p.raw, 1),
    fields: {},
    check: `from the paging-structure cache: the level-${level - 1} table is at 0x${p.table.toString(16)}`,
    ok: true,
    cached: 'paging-structure-cache',
  };
}

/** A context entry in a few words, for the trace. */
export function describeContext(words: ArrayLike<number>, sm: boolean): string {
  if (!sm) {
    const tt = (words[0]! >>> 2) & 3;
    return tt === 2 ? 'pass-through' : `second-level table, ${30 + 9 * (words[2]! & 7)}-bit, DID ${(words[2]! >>> 8) & 0xffff}`;
  }
  const pdts = (words[0]! >>> 9) & 7;
  return `PASID directory with ${2 ** (pdts + 7)} entries, RID_PASID ${words[2]! & 0xf_ffff}`;
}
