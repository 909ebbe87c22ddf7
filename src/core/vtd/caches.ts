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

/** Page sizes of the leaf table's size classes. */
const LEAF_SIZES = [4096, 0x20_0000, 0x4000_0000] as const;
const sizeClass = (size: number): number => (size === 4096 ? 0 : size === 0x20_0000 ? 1 : 2);
/** The page size of a leaf-table tag's class. */
export const leafSize = (tag: number): number => LEAF_SIZES[(tag - 1) & 3]!;

/**
 * The IOTLB's leaf entries: one open-addressed table (linear probing, backward-shift deletion) over typed
 * arrays, each entry's fields stored inline at its slot, so a hit touches a few array elements instead of a
 * Map's hash chain plus an entry object. Key = (bucket id, size class) as `tags` (0 = empty slot) and the
 * page number at that size. The table doubles as it fills; the FIFO ring bounds its population.
 */
export class LeafTable {
  mask = 1023;
  tags = new Int32Array(1024);
  vpns = new Float64Array(1024);
  outputs = new Float64Array(1024);
  perms = new Int32Array(1024);
  faults = new Int32Array(1024);
  levels = new Int32Array(1024);
  verifiedAt = new Float64Array(1024);
  /** Insertion number: tells the eviction ring whether a slot still holds the entry it recorded. */
  seqs = new Float64Array(1024);
  deps: (Deps | undefined)[] = new Array<Deps | undefined>(1024);
  count = 0;
  private nextSeq = 1;

  static tagOf(bucketId: number, cls: number): number {
    return bucketId * 4 + cls + 1;
  }

  private home(tag: number, vpn: number): number {
    const lo = vpn | 0;
    const hi = (vpn / 0x1_0000_0000) | 0;
    let h = Math.imul(lo ^ Math.imul(hi, 0x85eb_ca6b) ^ Math.imul(tag, 0xc2b2_ae35), 0x9e37_79b1);
    h ^= h >>> 15;
    return h & this.mask;
  }

  /** The slot holding (tag, vpn), or -1. */
  find(tag: number, vpn: number): number {
    const tags = this.tags;
    const mask = this.mask;
    for (let i = this.home(tag, vpn); ; i = (i + 1) & mask) {
      const t = tags[i]!;
      if (t === 0) return -1;
      if (t === tag && this.vpns[i] === vpn) return i;
    }
  }

  /** Stores an entry (replacing one with the same key); returns its insertion number. */
  put(tag: number, e: TlbEntry): number {
    if ((this.count + 1) * 2 > this.mask + 1) this.grow();
    let i = this.home(tag, e.vpn);
    while (this.tags[i] !== 0 && !(this.tags[i] === tag && this.vpns[i] === e.vpn)) i = (i + 1) & this.mask;
    if (this.tags[i] === 0) this.count++;
    this.tags[i] = tag;
    this.vpns[i] = e.vpn;
    this.outputs[i] = e.output;
    this.perms[i] = e.perms;
    this.faults[i] = e.fault;
    this.levels[i] = e.levels;
    this.verifiedAt[i] = e.verifiedAt;
    this.deps[i] = e.deps;
    const seq = this.nextSeq++;
    this.seqs[i] = seq;
    return seq;
  }

  /** Empties slot i, moving later entries of its probe run back so lookups never meet a hole. */
  remove(i: number): void {
    const mask = this.mask;
    this.count--;
    let hole = i;
    for (let j = (i + 1) & mask; this.tags[j] !== 0; j = (j + 1) & mask) {
      const k = this.home(this.tags[j]!, this.vpns[j]!);
      // Entry j may fill the hole if its home is not cyclically within (hole, j].
      const movable = hole <= j ? k <= hole || k > j : k <= hole && k > j;
      if (!movable) continue;
      this.move(j, hole);
      hole = j;
    }
    this.tags[hole] = 0;
    this.deps[hole] = undefined;
  }

  private move(from: number, to: number): void {
    this.tags[to] = this.tags[from]!;
    this.vpns[to] = this.vpns[from]!;
    this.outputs[to] = this.outputs[from]!;
    this.perms[to] = this.perms[from]!;
    this.faults[to] = this.faults[from]!;
    this.levels[to] = this.levels[from]!;
    this.verifiedAt[to] = this.verifiedAt[from]!;
    this.seqs[to] = this.seqs[from]!;
    this.deps[to] = this.deps[from];
  }

  private grow(): void {
    const old = { tags: this.tags, vpns: this.vpns, outputs: this.outputs, perms: this.perms, faults: this.faults, levels: this.levels, verifiedAt: this.verifiedAt, seqs: this.seqs, deps: this.deps };
    const n = (this.mask + 1) * 2;
    this.mask = n - 1;
    this.tags = new Int32Array(n);
    this.vpns = new Float64Array(n);
    this.outputs = new Float64Array(n);
    this.perms = new Int32Array(n);
    this.faults = new Int32Array(n);
    this.levels = new Int32Array(n);
    this.verifiedAt = new Float64Array(n);
    this.seqs = new Float64Array(n);
    this.deps = new Array<Deps | undefined>(n);
    for (let j = 0; j < old.tags.length; j++) {
      const tag = old.tags[j]!;
      if (tag === 0) continue;
      let i = this.home(tag, old.vpns[j]!);
      while (this.tags[i] !== 0) i = (i + 1) & this.mask;
      this.tags[i] = tag;
      this.vpns[i] = old.vpns[j]!;
      this.outputs[i] = old.outputs[j]!;
      this.perms[i] = old.perms[j]!;
      this.faults[i] = old.faults[j]!;
      this.levels[i] = old.levels[j]!;
      this.verifiedAt[i] = old.verifiedAt[j]!;
      this.seqs[i] = old.seqs[j]!;
      this.deps[i] = old.deps[j];
    }
  }

  /** The entry at slot i as an object (traces, snapshots: not the hot path). */
  entryAt(i: number): TlbEntry {
    const size = leafSize(this.tags[i]!);
    return { vpn: this.vpns[i]!, size, output: this.outputs[i]!, perms: this.perms[i]!, fault: this.faults[i]!, levels: this.levels[i]!, deps: this.deps[i]!, verifiedAt: this.verifiedAt[i]!, valid: true };
  }

  clear(): void {
    this.tags.fill(0);
    this.deps.fill(undefined);
    this.count = 0;
  }
}

/** FIFO eviction order of leaf-table entries: (tag, vpn, insertion number) per insertion. */
class LeafRing {
  private readonly tags: Int32Array;
  private readonly vpns: Float64Array;
  private readonly seqs: Float64Array;
  private head = 0;
  private count = 0;

  constructor(readonly capacity: number) {
    this.tags = new Int32Array(capacity);
    this.vpns = new Float64Array(capacity);
    this.seqs = new Float64Array(capacity);
  }

  /** Records an insertion; if the cache is full, returns the oldest key for eviction (the caller checks seq). */
  add(table: LeafTable, buckets: readonly IotlbBucket[], tag: number, vpn: number, seq: number): void {
    if (this.count === this.capacity) {
      const h = this.head;
      const slot = table.find(this.tags[h]!, this.vpns[h]!);
      if (slot >= 0 && table.seqs[slot] === this.seqs[h]) {
        buckets[(this.tags[h]! - 1) >>> 2]!.leafCounts[(this.tags[h]! - 1) & 3]--;
        table.remove(slot);
      }
      this.count--;
      this.head = (this.head + 1) % this.capacity;
    }
    const slot = (this.head + this.count) % this.capacity;
    this.tags[slot] = tag;
    this.vpns[slot] = vpn;
    this.seqs[slot] = seq;
    this.count++;
  }

  clear(): void {
    this.head = 0;
    this.count = 0;
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
    const tagPasid = mode === 'fl' || mode === 'nested' ? pasid : -1;
    const tag = Iotlb.tag(mode, did, tagPasid);
    let b = this.buckets.get(tag);
    if (!b) {
      b = new IotlbBucket(this.byId.length, did, tagPasid, mode);
      this.byId.push(b);
      this.buckets.set(tag, b);
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
