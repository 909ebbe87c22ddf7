import type { Deps, IotlbBucket, TlbEntry } from './caches';

/** Page sizes of the leaf table's size classes. */
export const LEAF_SIZES = [4096, 0x20_0000, 0x4000_0000] as const;
export const sizeClass = (size: number): number => (size === 4096 ? 0 : size === 0x20_0000 ? 1 : 2);
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
export class LeafRing {
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
