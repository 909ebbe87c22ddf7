import type { PhysicalMemory } from '../hw/memory';
import { CONTEXT_LEGACY, CONTEXT_SCALABLE, getField, type Layout, PASID_DIR_ENTRY, PASID_ENTRY, ROOT_LEGACY, ROOT_SCALABLE } from '../vtd/structures';
import { contextEntryAddress, pasidDirEntryAddress, pasidEntryAddress, readEntry, rootEntryAddress } from '../vtd/tables';

/**
 * The VMM reading the guest's remapping structures, as QEMU's vtd_dev_to_context_entry and vtd_ce_get_pasid_entry
 * do: from the root table the guest latched with SRTP, in guest memory, at guest-physical addresses. It reads,
 * never caches: the point of caching mode is that the guest tells the VMM when to read again.
 */

/** What a device's RID (or RID+PASID) is set up for in the guest's tables. */
export type GuestTranslation =
  | { readonly kind: 'absent'; readonly why: string }
  | { readonly kind: 'pass-through' }
  | { readonly kind: 'second-level'; readonly root: number; readonly levels: number; readonly did: number }
  | { readonly kind: 'first-level'; readonly root: number; readonly levels: 4 | 5; readonly did: number; readonly sre: boolean; readonly wpe: boolean; readonly eafe: boolean }
  | { readonly kind: 'nested'; readonly did: number };

/** One entry read from guest memory, its fields by name (flags 0/1, addresses as numbers). */
function entry(mem: PhysicalMemory, addr: number, layout: Layout): (name: string) => number {
  const words = readEntry(mem, addr, layout);
  const fields = byName(layout);
  return (name) => {
    const f = fields.get(name);
    if (!f) throw new Error(`${layout.name} has no field ${name}`);
    return getField(words, f);
  };
}

const BY_NAME = new Map<Layout, Map<string, Layout['fields'][number]>>();
function byName(layout: Layout): Map<string, Layout['fields'][number]> {
  let m = BY_NAME.get(layout);
  if (!m) BY_NAME.set(layout, (m = new Map(layout.fields.map((f) => [f.name, f]))));
  return m;
}

export interface GuestRoot {
  readonly memory: PhysicalMemory;
  readonly rootTable: number;
  readonly scalable: boolean;
  readonly translationEnabled: boolean;
}

/** The guest's translation for `rid` (and `pasid` in scalable mode; PASID 0 is RID_PASID as Linux sets it). */
export function guestTranslation(g: GuestRoot, rid: number, pasid?: number): GuestTranslation {
  if (!g.translationEnabled) return { kind: 'pass-through' };
  const mem = g.memory;
  const bus = rid >>> 8;
  const devfn = rid & 0xff;
  const rl = g.scalable ? ROOT_SCALABLE : ROOT_LEGACY;
  const root = entry(mem, rootEntryAddress(g.rootTable, bus), rl);
  const upper = g.scalable && devfn >= 0x80;
  if (!root(upper ? 'UP' : g.scalable ? 'LP' : 'P')) return { kind: 'absent', why: `root entry for bus ${bus} not present` };
  const ctp = root(upper ? 'UCTP' : g.scalable ? 'LCTP' : 'CTP');
  const cl = g.scalable ? CONTEXT_SCALABLE : CONTEXT_LEGACY;
  const ctx = entry(mem, contextEntryAddress(ctp, devfn, g.scalable), cl);
  if (!ctx('P')) return { kind: 'absent', why: `context entry for ${hexRid(rid)} not present` };
  if (!g.scalable) {
    if (ctx('TT') === 2) return { kind: 'pass-through' };
    return { kind: 'second-level', root: ctx('SLPTPTR'), levels: ctx('AW') + 2, did: ctx('DID') };
  }
  const p = pasid ?? ctx('RID_PASID');
  const dir = entry(mem, pasidDirEntryAddress(ctx('PASIDDIRPTR'), p), PASID_DIR_ENTRY);
  if (!dir('P')) return { kind: 'absent', why: `PASID directory entry for PASID ${p} not present` };
  const pe = entry(mem, pasidEntryAddress(dir('SMPTBLPTR'), p), PASID_ENTRY);
  if (!pe('P')) return { kind: 'absent', why: `PASID entry ${p} of ${hexRid(rid)} not present` };
  const did = pe('DID');
  switch (pe('PGTT')) {
    case 1:
      return { kind: 'first-level', root: pe('FLPTPTR'), levels: pe('FLPM') === 1 ? 5 : 4, did, sre: pe('SRE') === 1, wpe: pe('WPE') === 1, eafe: pe('EAFE') === 1 };
    case 2:
      return { kind: 'second-level', root: pe('SLPTPTR'), levels: pe('AW') + 2, did };
    case 3:
      return { kind: 'nested', did };
    case 4:
      return { kind: 'pass-through' };
    default:
      return { kind: 'absent', why: `PASID entry ${p} of ${hexRid(rid)} has reserved PGTT ${pe('PGTT')}` };
  }
}

/**
 * The PASIDs whose guest PASID entry is present for `rid` (scalable mode), found as QEMU's PASID-cache sync
 * finds them: through the present PASID directory entries (PDTS sizes the directory: 2^(PDTS+7) entries),
 * then the 64 entries of each table, so a sparse 20-bit space costs what is present, not 2^20 reads.
 */
export function presentGuestPasids(g: GuestRoot, rid: number): number[] {
  if (!g.translationEnabled || !g.scalable) return [];
  const mem = g.memory;
  const bus = rid >>> 8;
  const devfn = rid & 0xff;
  const root = entry(mem, rootEntryAddress(g.rootTable, bus), ROOT_SCALABLE);
  const upper = devfn >= 0x80;
  if (!root(upper ? 'UP' : 'LP')) return [];
  const ctx = entry(mem, contextEntryAddress(root(upper ? 'UCTP' : 'LCTP'), devfn, true), CONTEXT_SCALABLE);
  if (!ctx('P')) return [];
  const dir = ctx('PASIDDIRPTR');
  const dirEntries = Math.min(2 ** (ctx('PDTS') + 7), 2 ** 14);
  const out: number[] = [];
  for (let d = 0; d < dirEntries; d++) {
    const lo = mem.readLo(dir + d * 8);
    if ((lo & 1) === 0) continue;
    const table = (mem.readHi(dir + d * 8) & 0xf_ffff) * 0x1_0000_0000 + ((lo & 0xffff_f000) >>> 0);
    for (let i = 0; i < 64; i++) if (mem.readLo(table + i * 64) & 1) out.push(d * 64 + i);
  }
  return out;
}

function hexRid(rid: number): string {
  return `${(rid >>> 8).toString(16).padStart(2, '0')}:${((rid >>> 3) & 0x1f).toString(16).padStart(2, '0')}.${rid & 7}`;
}

