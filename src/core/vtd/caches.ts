import type { PhysicalMemory } from '../hw/memory';
import { POW2 } from '../u64';
import { LEAF_SIZES, LeafRing, LeafTable, sizeClass } from './iotlb-table';

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
  /** Leaf entries of each page size (4 KiB, 2 MiB, 1 GiB) this bucket holds in the Iotlb's leaf table. */
  readonly leafCounts: [number, number, number] = [0, 0, 0];
  /** Paging-structure caches by level of the cached entry (2..5): key = address / (4 KiB * 512^(level-1)). */
  readonly pwc: Map<number, PwcEntry>[] = [new Map(), new Map(), new Map(), new Map(), new Map(), new Map()];

  constructor(
    /** Index in the Iotlb's bucket list: leaf-table keys carry it. */
    readonly id: number,
    readonly did: number,
    readonly pasid: number,
    readonly mode: BucketMode,
  ) {}

  get size(): number {
    return this.leafCounts[0] + this.leafCounts[1] + this.leafCounts[2];
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
  /** Buckets by id. */
  private readonly byId: IotlbBucket[] = [];
  /** The second-level bucket of each DID (a DID is 16 bits), once made. */
  private readonly slBuckets: (IotlbBucket | undefined)[] = new Array<IotlbBucket | undefined>(65536).fill(undefined);
  readonly leaves = new LeafTable();
  private readonly leafRing: LeafRing;
  private readonly pwcRing: EvictionRing<PwcEntry>;

  constructor(capacity: number, pwcCapacity: number) {
    this.leafRing = new LeafRing(capacity);
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
    // Second-level buckets by DID directly: legacy translation asks for one on every IOTLB hit.
    if (mode === 'sl') {
      const sl = this.slBuckets[did];
      if (sl !== undefined) return sl;
    }
    const tagPasid = mode === 'fl' || mode === 'nested' ? pasid : -1;
    const tag = Iotlb.tag(mode, did, tagPasid);
    let b = this.buckets.get(tag);
    if (!b) {
      b = new IotlbBucket(this.byId.length, did, tagPasid, mode);
      this.byId.push(b);
      this.buckets.set(tag, b);
      if (mode === 'sl') this.slBuckets[did] = b;
    }
    return b;
  }

  /** The leaf-table slot of the translation of 4 KiB page `vpn` in bucket b, at any page size; -1 on a miss. */
  lookup(b: IotlbBucket, vpn: number): number {
    const t = this.leaves;
    const base = b.id * 4 + 1;
    const e = t.find(base, vpn);
    if (e >= 0) return e;
    const n = b.leafCounts;
    if (n[1] > 0) {
      const m = t.find(base + 1, Math.floor(vpn / 512));
      if (m >= 0) return m;
    }
    if (n[2] > 0) return t.find(base + 2, Math.floor(vpn / 262144));
    return -1;
  }

  insert(b: IotlbBucket, e: TlbEntry): void {
    const cls = sizeClass(e.size);
    const tag = LeafTable.tagOf(b.id, cls);
    if (this.leaves.find(tag, e.vpn) < 0) b.leafCounts[cls]++;
    const seq = this.leaves.put(tag, e);
    this.leafRing.add(this.leaves, this.byId, tag, e.vpn, seq);
  }

  insertPwc(b: IotlbBucket, level: number, key: number, e: PwcEntry): void {
    const map = b.pwc[level]!;
    const old = map.get(key);
    if (old) old.valid = false;
    map.set(key, e);
    this.pwcRing.add(map, key, e);
  }

  /** Leaf entries of one bucket, 4 KiB then 2 MiB then 1 GiB, each in insertion order (snapshots). */
  leafEntries(b: IotlbBucket): TlbEntry[] {
    const t = this.leaves;
    const found: number[] = [];
    if (b.size > 0) for (let i = 0; i <= t.mask; i++) if (t.tags[i] !== 0 && (t.tags[i]! - 1) >>> 2 === b.id) found.push(i);
    found.sort((x, y) => ((t.tags[x]! - t.tags[y]!) || (t.seqs[x]! - t.seqs[y]!)));
    return found.map((i) => t.entryAt(i));
  }

  /**
   * Drops entries of the buckets `select` picks; with a range, only leaf entries overlapping
   * [base, base+size) and (unless `leafOnly`) paging-structure entries whose span overlaps it.
   */
  invalidate(select: (b: IotlbBucket) => boolean, range?: { base: number; size: number; leafOnly: boolean }): { iotlb: number; pwc: number } {
    let iotlb = 0;
    let pwc = 0;
    const t = this.leaves;
    for (const b of this.buckets.values()) {
      if (!select(b)) continue;
      if (!range) {
        if (b.size > 0) iotlb += this.dropLeaves(b, 0, 0, Infinity);
        for (const m of b.pwc) {
          for (const e of m.values()) e.valid = false;
          pwc += m.size;
          m.clear();
        }
        continue;
      }
      const end = range.base + range.size;
      for (let cls = 0; cls < 3; cls++) {
        const n = b.leafCounts[cls]!;
        if (n === 0) continue;
        const size = LEAF_SIZES[cls]!;
        const first = Math.floor(range.base / size);
        const last = Math.floor((end - 1) / size);
        if (last - first < n) {
          const tag = LeafTable.tagOf(b.id, cls);
          for (let v = first; v <= last; v++) {
            const i = t.find(tag, v);
            if (i >= 0) {
              t.remove(i);
              b.leafCounts[cls]--;
              iotlb++;
            }
          }
        } else {
          iotlb += this.dropLeaves(b, cls, first, last);
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

  /**
   * Removes bucket b's leaf entries by a scan of the table: with first = 0 and last = Infinity all of them
   * (any class, `cls` ignored), else those of class `cls` with page numbers in [first, last]. Returns the count.
   */
  private dropLeaves(b: IotlbBucket, cls: number, first: number, last: number): number {
    const t = this.leaves;
    const all = last === Infinity;
    const slots: number[] = [];
    for (let i = 0; i <= t.mask; i++) {
      const tag = t.tags[i]!;
      if (tag === 0 || (tag - 1) >>> 2 !== b.id) continue;
      if (!all && (((tag - 1) & 3) !== cls || t.vpns[i]! < first || t.vpns[i]! > last)) continue;
      slots.push(i);
    }
    // Removal moves entries between slots: collect keys first, then remove each by key.
    const keys = slots.map((i) => [t.tags[i]!, t.vpns[i]!] as const);
    for (const [tag, vpn] of keys) {
      t.remove(t.find(tag, vpn));
      b.leafCounts[(tag - 1) & 3]--;
    }
    return keys.length;
  }

  clear(): void {
    this.invalidate(() => true);
    this.leaves.clear();
    this.leafRing.clear();
    this.pwcRing.clear();
  }

  get entryCount(): number {
    return this.leaves.count;
  }
}
