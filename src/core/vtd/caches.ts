import type { PhysicalMemory } from '../hw/memory';
import { POW2 } from '../u64';

/**
 * The caches of a VT-d unit, as the spec describes them (chapter 6): context cache, PASID cache, IOTLB
 * and paging-structure caches. Each entry remembers the memory words it was built from (`deps`), so the
 * model can tell when a cached entry is used after software changed the table without invalidating it:
 * the bug class users hunt. Verification is lazy: an entry is compared with memory only when memory has been
 * written since the entry was last verified (PhysicalMemory.writeCount), so cache hits stay cheap.
 *
 * Eviction is FIFO over a fixed capacity, so the model is deterministic.
 */

/** Flat list of (entry address, expected high word, expected low word, low-word compare mask). */
export type Deps = number[];

/** Index (in Deps, a multiple of 4) of the first dependency that no longer matches memory, or -1. */
export function firstMismatch(mem: PhysicalMemory, deps: Deps): number {
  for (let i = 0; i < deps.length; i += 4) {
    const a = deps[i]!;
    // One page lookup per entry (entries are 8-byte aligned: both halves are in the page).
    const page = mem.pageForRead(a);
    const w = (a & 0xfff) >>> 2;
    const lo = page === undefined ? 0 : page[w]!;
    const hi = page === undefined ? 0 : page[w + 1]!;
    if (hi !== deps[i + 1] || ((lo ^ deps[i + 2]!) & deps[i + 3]!) !== 0) return i;
  }
  return -1;
}

/** A cached entry that memory can invalidate under it. */
export interface Verified {
  deps: Deps;
  verifiedAt: number;
  valid: boolean;
}

export interface ContextCacheEntry extends Verified {
  readonly sid: number;
  readonly scalable: boolean;
  /** Root entry (4 u32) and context entry (4 or 8 u32) words, memory order. */
  /** Memory order; reused scratch words for an entry decoded for no cache (caching off, probes). */
  readonly rootWords: ArrayLike<number>;
  readonly words: ArrayLike<number>;
  readonly rootAddr: number;
  readonly ctxAddr: number;
  /** A not-present (or otherwise faulting) entry cached under caching mode: its fault reason; 0 when usable. */
  readonly fault: number;
  readonly fpd: boolean;
  // legacy
  readonly tt: number;
  readonly aw: number;
  readonly did: number;
  readonly slptptr: number;
  // scalable mode
  readonly dte: boolean;
  readonly pasidEnable: boolean;
  readonly pre: boolean;
  readonly pdts: number;
  readonly pasidDir: number;
  readonly ridPasid: number;
  readonly ridPriv: boolean;
  /** The PASID-cache entry this context last resolved, to skip a lookup on the hot path. */
  lastPasid: number;
  lastPe: PasidCacheEntry | undefined;
}

export interface PasidCacheEntry extends Verified {
  readonly sid: number;
  readonly pasid: number;
  readonly dirAddr: number;
  readonly dirWords: ArrayLike<number>;
  readonly entryAddr: number;
  readonly words: ArrayLike<number>;
  readonly fault: number;
  readonly fpd: boolean;
  readonly pgtt: number;
  readonly did: number;
  readonly aw: number;
  readonly ssade: boolean;
  /** Page-walk snoop: A/D updates need it. */
  readonly pwsnp: boolean;
  readonly slptptr: number;
  readonly flptptr: number;
  readonly flpm: number;
  readonly sre: boolean;
  readonly ere: boolean;
  /** SLEE (qw0 bit 5): second-level X bits decide execute requests; clear, they are ignored. */
  readonly slee: boolean;
  /** SMEP (bit 134): supervisor execute requests need a supervisor page. */
  readonly smep: boolean;
  readonly wpe: boolean;
  readonly nxe: boolean;
  readonly eafe: boolean;
  /** The IOTLB bucket for this entry's tag, resolved once. */
  bucket: IotlbBucket | undefined;
}

/**
 * Permission bits of cached translations: U = user-accessible (first level); D = the first-level leaf's dirty
 * bit is already set, so a write may use the entry without walking to set it.
 */
export const Perm = { R: 1, W: 2, X: 4, U: 8, D: 16 } as const;

export interface TlbEntry extends Verified {
  /** Input page number at this entry's size (address / size). */
  readonly vpn: number;
  readonly size: number;
  /** Output base address of the page. */
  readonly output: number;
  /** Perm bits: effective permissions of the translation. */
  readonly perms: number;
  /** A cached not-present translation (caching mode): its fault reason; 0 for a real translation. */
  readonly fault: number;
  /** Paging-entry levels of the walk that filled it (for the trace). */
  readonly levels: number;
}

export interface PwcEntry extends Verified {
  /** Physical address of the next-level table this entry points to. */
  readonly table: number;
  /** Permissions accumulated down to and including this entry. */
  readonly perms: number;
  readonly entryAddr: number;
  readonly raw: readonly number[];
}

export type BucketMode = 'sl' | 'fl' | 'nested' | 'pt';
const MODE_INDEX: Record<BucketMode, number> = { sl: 0, fl: 1, nested: 2, pt: 3 };

/**
 * All IOTLB and paging-structure cache entries with one tag. Tags are (DID) for second-level and
 * pass-through translations and (DID, PASID) for first-level and nested ones, as the hardware tags them.
 */
export class IotlbBucket {
  readonly small = new Map<number, TlbEntry>();
  readonly mid = new Map<number, TlbEntry>();
  readonly big = new Map<number, TlbEntry>();
  /** Paging-structure caches by level of the cached entry (2..5): key = address / (4 KiB * 512^(level-1)). */
  readonly pwc: Map<number, PwcEntry>[] = [new Map(), new Map(), new Map(), new Map(), new Map(), new Map()];

  constructor(
    readonly did: number,
    readonly pasid: number,
    readonly mode: BucketMode,
  ) {}

  get size(): number {
    return this.small.size + this.mid.size + this.big.size;
  }
}

/** FIFO eviction order over entries stored in several maps. */
class EvictionRing<E extends Verified> {
  private readonly maps: (Map<number, E> | undefined)[];
  private readonly keys: Float64Array;
  private readonly entries: (E | undefined)[];
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.maps = new Array(capacity);
    this.keys = new Float64Array(capacity);
    this.entries = new Array(capacity);
  }

  /** Records an insertion; evicts the oldest entry if the cache is full. */
  add(map: Map<number, E>, key: number, entry: E): void {
    if (this.count === this.capacity) {
      const old = this.entries[this.head];
      const oldMap = this.maps[this.head];
      if (old && oldMap && oldMap.get(this.keys[this.head]!) === old) {
        oldMap.delete(this.keys[this.head]!);
        old.valid = false;
      }
      this.count--;
      this.head = (this.head + 1) % this.capacity;
    }
    const slot = (this.head + this.count) % this.capacity;
    this.maps[slot] = map;
    this.keys[slot] = key;
    this.entries[slot] = entry;
    this.count++;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
    this.maps.fill(undefined);
    this.entries.fill(undefined);
  }
}

export class Iotlb {
  readonly buckets = new Map<number, IotlbBucket>();
  private readonly leafRing: EvictionRing<TlbEntry>;
  private readonly pwcRing: EvictionRing<PwcEntry>;

  constructor(capacity: number, pwcCapacity: number) {
    this.leafRing = new EvictionRing(capacity);
    this.pwcRing = new EvictionRing(pwcCapacity);
  }

  /**
   * (mode, DID, PASID or -1) as one exact number: DID < 2^16, PASID < 2^20. Buckets are never removed, only
   * emptied, so a PASID-cache entry's reference to its bucket stays valid for as long as the entry does.
   */
  static tag(mode: BucketMode, did: number, pasid: number): number {
    return MODE_INDEX[mode] * 0x20_0000_0000 + did * 0x20_0000 + (pasid + 1); // mode * 2^37
  }

  bucket(did: number, pasid: number, mode: BucketMode): IotlbBucket {
    const tagPasid = mode === 'fl' || mode === 'nested' ? pasid : -1;
    const tag = Iotlb.tag(mode, did, tagPasid);
    let b = this.buckets.get(tag);
    if (!b) {
      b = new IotlbBucket(did, tagPasid, mode);
      this.buckets.set(tag, b);
    }
    return b;
  }

  insert(b: IotlbBucket, e: TlbEntry): void {
    const map = e.size === 4096 ? b.small : e.size === 0x20_0000 ? b.mid : b.big;
    const old = map.get(e.vpn);
    if (old) old.valid = false;
    map.set(e.vpn, e);
    this.leafRing.add(map, e.vpn, e);
  }

  insertPwc(b: IotlbBucket, level: number, key: number, e: PwcEntry): void {
    const map = b.pwc[level]!;
    const old = map.get(key);
    if (old) old.valid = false;
    map.set(key, e);
    this.pwcRing.add(map, key, e);
  }

  /**
   * Drops entries of the buckets `select` picks; with a range, only leaf entries overlapping
   * [base, base+size) and (unless `leafOnly`) paging-structure entries whose span overlaps it.
   */
  invalidate(select: (b: IotlbBucket) => boolean, range?: { base: number; size: number; leafOnly: boolean }): { iotlb: number; pwc: number } {
    let iotlb = 0;
    let pwc = 0;
    for (const b of this.buckets.values()) {
      if (!select(b)) continue;
      if (!range) {
        for (const m of [b.small, b.mid, b.big]) {
          for (const e of m.values()) e.valid = false;
          iotlb += m.size;
          m.clear();
        }
        for (const m of b.pwc) {
          for (const e of m.values()) e.valid = false;
          pwc += m.size;
          m.clear();
        }
        continue;
      }
      const end = range.base + range.size;
      for (const [m, size] of [[b.small, 4096], [b.mid, 0x20_0000], [b.big, 0x4000_0000]] as const) {
        if (m.size === 0) continue;
        const first = Math.floor(range.base / size);
        const last = Math.floor((end - 1) / size);
        if (last - first < m.size) {
          for (let v = first; v <= last; v++) {
            const e = m.get(v);
            if (e) {
              e.valid = false;
              m.delete(v);
              iotlb++;
            }
          }
        } else {
          for (const [v, e] of m) {
            if (v >= first && v <= last) {
              e.valid = false;
              m.delete(v);
              iotlb++;
            }
          }
        }
      }
      if (!range.leafOnly) {
        for (let level = 2; level <= 5; level++) {
          const span = POW2[12 + 9 * (level - 1)]!;
          const m = b.pwc[level]!;
          for (const [k, e] of m) {
            if (k * span < end && range.base < (k + 1) * span) {
              e.valid = false;
              m.delete(k);
              pwc++;
            }
          }
        }
      }
    }
    return { iotlb, pwc };
  }

  clear(): void {
    this.invalidate(() => true);
    this.leafRing.clear();
    this.pwcRing.clear();
  }

  get entryCount(): number {
    let n = 0;
    for (const b of this.buckets.values()) n += b.size;
    return n;
  }
}
