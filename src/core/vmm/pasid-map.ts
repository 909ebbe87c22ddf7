import { fail } from '../driver/errors';
import { Ida } from '../driver/ida';
import { FIRST_GLOBAL_PASID, MAX_PASID_BITS, type PasidCapable } from '../driver/pasid-alloc';
import type { VmmFinding, VmmFindingCode } from './findings';
import { PasidSplit } from './pasid-split';
import { PasidTrace, type LookupSide } from './pasid-trace';

/**
 * - `identity`: G = H. The guest's PASID space is delegated to it (an assigned PF or VF, reference §4.4):
 *   the device emits the guest's PASIDs and the host PASID table holds them at the same index.
 * - `non-identity`: every guest PASID gets a host PASID from the host's global allocator (SIOV/mdev, or a
 *   guest that must share the host's PASID space with ENQCMD and SVA), as seed 000's flow does.
 */
export type PasidPolicy = 'identity' | 'non-identity';

/**
 * Where host PASIDs come from: the shape of the driver model's `PasidAllocator` (driver/pasid-alloc.ts,
 * `iommu_alloc_global_pasid` and `iommu_free_global_pasid`), so the kernel model's allocator plugs in as is.
 * `allocGlobal` throws a `KernelError` (ENOSPC, EOPNOTSUPP, EINVAL) as the driver model does.
 */
export interface HostPasidAllocator {
  allocGlobal(devices: readonly PasidCapable[], min?: number): number;
  freeGlobal(pasid: number): void;
}

/** Something else that keeps a host PASID in use (KVM's CPU PASID translation table, cpu-pasid.ts). */
export interface HostPasidHolder {
  readonly holderName: string;
  holds(hostPasid: number): boolean;
}

/** A user of a guest PASID: a device of the VM (with its PASID width) or another consumer such as KVM. */
export interface PasidUser {
  readonly name: string;
  /** `dev->iommu->max_pasids`: a host PASID used on this device must be below it. */
  readonly maxPasids?: number;
}

/** An inclusive range of PASIDs. */
export interface PasidRange {
  readonly min: number;
  readonly max: number;
}

export interface PasidMapOptions {
  readonly vm: string;
  readonly policy: PasidPolicy;
  /** Required for `non-identity`. */
  readonly allocator?: HostPasidAllocator;
  /** The VM's assigned devices: a host PASID must fit all of them, because ENQCMD reaches any of them. */
  readonly devices?: readonly PasidCapable[];
  /**
   * The local/global split (non-identity only): guest PASIDs from its local range, host PASIDs from its
   * global range. Without it guest PASIDs range over [1, 2^20 - 1] and host PASIDs start at 1.
   */
  readonly split?: PasidSplit;
  /** Shared with the VM's other tables so the order of lookups is kept. */
  readonly trace?: PasidTrace;
}

/** What migrates: guest PASIDs and who uses them, never a host PASID (seed 003: those are re-allocated). */
export interface GuestPasidState {
  readonly vm: string;
  readonly policy: PasidPolicy;
  /** The split is VM state: the destination must confine the guest to the same local range. */
  readonly globalMin: number | null;
  readonly entries: readonly {
    readonly guest: number;
    /** Allocated through the virtual command interface, so it lives until FREE_PASID, not until its last user. */
    readonly vcmd: boolean;
    readonly users: readonly { readonly name: string; readonly refs: number }[];
  }[];
}

export interface PasidMapEntry {
  readonly guest: number;
  readonly host: number;
  readonly vcmd: boolean;
  readonly users: readonly { readonly name: string; readonly refs: number }[];
}

/** What the destination of a migration brings: its own allocator, devices and trace. */
export type DestinationOptions = Omit<PasidMapOptions, 'vm' | 'policy' | 'split'>;

interface Entry {
  readonly guest: number;
  readonly host: number;
  readonly users: Map<string, number>;
  vcmd: boolean;
}

const FULL_RANGE: PasidRange = { min: FIRST_GLOBAL_PASID, max: 2 ** MAX_PASID_BITS - 1 };

/**
 * One VM's guest/host PASID table, with the two lookups seed 000 keeps fast and the reverse searches it
 * keeps for the slow path:
 * - the VMM's G-to-H table (QEMU: one host PASID per guest PASID, shared by every device of the VM and
 *   refcounted per user, as the research QEMU of reference §7.3 keeps it);
 * - the host driver's H-to-G, kept per device as the bind's private data (`bind_gpasid(hpasid, gpasid,
 *   dev)`), so a page request carries the guest PASID to the VMM without a search;
 * - the VMM's H-to-G and the driver's G-to-H (`iommu_get_hpasid`, the VDCM's path) as searches.
 * Misuse by the caller (unknown PASIDs, double binds) throws a `KernelError`; a broken invariant is recorded
 * in `findings` and the model goes on.
 */
export class PasidMap {
  readonly vm: string;
  readonly policy: PasidPolicy;
  readonly guestRange: PasidRange;
  readonly split: PasidSplit | undefined;
  readonly trace: PasidTrace;
  readonly findings: VmmFinding[] = [];
  private readonly allocator: HostPasidAllocator | undefined;
  private readonly deviceList: PasidCapable[];
  private readonly guestIds: Ida;
  private readonly byGuest = new Map<number, Entry>();
  /** The host driver's binds: device → (host PASID → guest PASID), the bind's private data. */
  private readonly binds = new Map<string, Map<number, number>>();
  private readonly holders: HostPasidHolder[] = [];

  constructor(opts: PasidMapOptions) {
    this.vm = opts.vm;
    this.policy = opts.policy;
    this.split = opts.split;
    this.guestRange = opts.split?.localRange ?? FULL_RANGE;
    this.trace = opts.trace ?? new PasidTrace();
    this.allocator = opts.allocator;
    this.deviceList = [...(opts.devices ?? [])];
    if (this.policy === 'identity' && this.split) fail('EINVAL', `${this.vm}: a local/global split needs non-identity PASIDs`);
    if (this.policy === 'non-identity' && !this.allocator) fail('EINVAL', `${this.vm}: non-identity PASIDs need a host PASID allocator`);
    this.guestIds = new Ida(this.guestRange.min, this.guestRange.max, `guest PASID of ${this.vm}`);
  }

  get devices(): readonly PasidCapable[] {
    return this.deviceList;
  }

  /** A device assigned later (hot-plug): host PASIDs allocated from now on fit it too. */
  addDevice(dev: PasidCapable): void {
    this.deviceList.push(dev);
  }

  /** Another table that keeps host PASIDs in use; consulted before a host PASID is freed or handed out. */
  addHolder(holder: HostPasidHolder): void {
    this.holders.push(holder);
  }

  get size(): number {
    return this.byGuest.size;
  }

  /** Whether `user` already uses `guest` (a keyed check, no trace: it is the table's own bookkeeping). */
  hasUser(guest: number, user: string): boolean {
    return this.byGuest.get(guest)?.users.has(user) ?? false;
  }

  entries(): PasidMapEntry[] {
    return [...this.byGuest.values()]
      .sort((a, b) => a.guest - b.guest)
      .map((e) => ({ guest: e.guest, host: e.host, vcmd: e.vcmd, users: usersOf(e) }));
  }

  // ---- the VMM's operations ----

  /**
   * The virtual command ALLOC_PASID (seed 000 step 2): the VMM picks the guest PASID and allocates the host
   * PASID behind it. ENOSPC when either space is exhausted.
   */
  allocGuest(): { guest: number; host: number } {
    const guest = this.guestIds.alloc();
    const entry = this.createEntry(guest, true);
    return { guest, host: entry.host };
  }

  /** FREE_PASID: only a PASID the VMM handed out, and only once no user is left (EBUSY otherwise). */
  freeGuest(guest: number): void {
    const entry = this.byGuest.get(guest);
    if (!entry?.vcmd) fail('EINVAL', `${this.vm}: guest PASID ${guest} was not allocated through the virtual command interface`);
    if (entry.users.size) fail('EBUSY', `${this.vm}: guest PASID ${guest} is still used by ${[...entry.users.keys()].join(', ')}`);
    this.removeEntry(entry);
  }

  /**
   * A user starts using a guest PASID (the VMM saw the guest's PASID entry at a PASID-cache flush, or maps
   * it into KVM). The first user of a PASID the guest chose itself creates the entry and its host PASID.
   * EOVERFLOW when the host PASID does not fit the user's PASID width (as `iommu_alloc_mm_data` refuses an
   * existing PASID too wide for a device).
   */
  map(guest: number, user: PasidUser): number {
    if (!Number.isInteger(guest) || guest < this.guestRange.min || guest > this.guestRange.max) {
      fail('ERANGE', `${this.vm}: guest PASID ${guest} is outside [${this.guestRange.min}, ${this.guestRange.max}]`);
    }
    let entry = this.byGuest.get(guest);
    const created = !entry;
    if (!entry) {
      this.guestIds.take(guest);
      entry = this.createEntry(guest, false);
    }
    if (user.maxPasids !== undefined && entry.host >= user.maxPasids) {
      if (created) this.removeEntry(entry);
      fail('EOVERFLOW', `${this.vm}: host PASID ${entry.host} of guest PASID ${guest} does not fit ${user.name} (max PASIDs ${user.maxPasids})`);
    }
    entry.users.set(user.name, (entry.users.get(user.name) ?? 0) + 1);
    return entry.host;
  }

  /** Drops one reference of `user`; the last user of a guest-chosen PASID frees its host PASID. */
  unmap(guest: number, user: PasidUser | string): void {
    const name = typeof user === 'string' ? user : user.name;
    const entry = this.byGuest.get(guest) ?? fail('ENOENT', `${this.vm}: guest PASID ${guest} is not mapped`);
    const refs = entry.users.get(name) ?? fail('EINVAL', `${this.vm}: ${name} does not use guest PASID ${guest}`);
    if (refs > 1) entry.users.set(name, refs - 1);
    else entry.users.delete(name);
    if (entry.users.size === 0 && !entry.vcmd) this.removeEntry(entry);
  }

  /** G-to-H, fast: the VMM's keyed lookup (PASID-cache flush, page response, ENQCMD setup). */
  vmmGuestToHost(guest: number, why?: string): number | undefined {
    const to = this.byGuest.get(guest)?.host;
    this.trace.record({ side: 'vmm', direction: 'G-to-H', kind: 'fast', vm: this.vm, from: guest, to, ...(why ? { why } : {}) });
    return to;
  }

  /** H-to-G by the VMM: a search, the lookup seed 000 avoids on the page-request path by private data. */
  vmmHostToGuest(host: number, why?: string): number | undefined {
    let to: number | undefined;
    for (const e of this.byGuest.values()) {
      if (e.host === host) {
        to = e.guest;
        break;
      }
    }
    this.trace.record({ side: 'vmm', direction: 'H-to-G', kind: 'reverse', vm: this.vm, from: host, to, ...(why ? { why } : {}) });
    return to;
  }

  // ---- the host IOMMU driver's side ----

  /**
   * `bind_gpasid(hpasid, gpasid, dev)` (seed 000 step 5): the driver keeps the guest PASID as the bind's
   * private data. Binding a host PASID that the G-to-H table does not lead to is a finding: the host entry
   * would become present before its mapping exists.
   */
  bind(host: number, guest: number, device: string): void {
    let mine = this.binds.get(device);
    if (!mine) this.binds.set(device, (mine = new Map()));
    if (mine.has(host)) fail('EBUSY', `${this.vm}: ${device} already has host PASID ${host} bound (to guest PASID ${mine.get(host)})`);
    this.checkPresent(host, guest);
    mine.set(host, guest);
  }

  unbind(host: number, device: string): void {
    const mine = this.binds.get(device);
    if (!mine?.delete(host)) fail('ENOENT', `${this.vm}: ${device} has no bind at host PASID ${host}`);
    if (mine.size === 0) this.binds.delete(device);
  }

  /** H-to-G, fast: the driver reads the bind's private data (a page request's host PASID → guest PASID). */
  driverHostToGuest(host: number, device: string, why?: string): number | undefined {
    const to = this.binds.get(device)?.get(host);
    this.trace.record({ side: 'host-driver', direction: 'H-to-G', kind: 'fast', vm: this.vm, from: host, to, device, ...(why ? { why } : {}) });
    return to;
  }

  /**
   * G-to-H by the driver (`iommu_get_hpasid`, seed 000 step 7): a search over the device's binds, for the
   * slow path only; the VDCM calls it when the guest programs a guest PASID into a mediated work queue.
   */
  driverGuestToHost(guest: number, device: string, opts: { requester?: LookupSide; why?: string } = {}): number | undefined {
    let to: number | undefined;
    for (const [h, g] of this.binds.get(device) ?? []) {
      if (g === guest) {
        to = h;
        break;
      }
    }
    this.trace.record({
      side: 'host-driver',
      direction: 'G-to-H',
      kind: 'reverse',
      vm: this.vm,
      from: guest,
      to,
      device,
      ...(opts.requester ? { requester: opts.requester } : {}),
      ...(opts.why ? { why: opts.why } : {}),
    });
    return to;
  }

  // ---- invariants ----

  /**
   * Call before making the host PASID entry at `host` present: a G-to-H entry must lead to it (from `guest`
   * when given). Returns the finding (also recorded) or undefined.
   */
  checkPresent(host: number, guest?: number): VmmFinding | undefined {
    if (guest !== undefined) {
      const mapped = this.byGuest.get(guest)?.host;
      if (mapped === host) return undefined;
      const now = mapped === undefined ? 'it has no G-to-H entry' : `G-to-H maps it to host PASID ${mapped}`;
      return this.note('present-without-mapping', `host PASID ${host} made present for guest PASID ${guest}, but ${now}`, guest, host);
    }
    for (const e of this.byGuest.values()) if (e.host === host) return undefined;
    return this.note('present-without-mapping', `host PASID ${host} made present with no guest PASID mapped to it`, undefined, host);
  }

  /** Every pair of guest PASIDs sharing a host PASID (none while the table is sound). */
  checkBijection(): VmmFinding[] {
    const seen = new Map<number, number>();
    const out: VmmFinding[] = [];
    for (const e of [...this.byGuest.values()].sort((a, b) => a.guest - b.guest)) {
      const other = seen.get(e.host);
      if (other !== undefined) {
        out.push(this.finding('not-bijective', `guest PASIDs ${other} and ${e.guest} both map to host PASID ${e.host}`, e.guest, e.host));
      } else seen.set(e.host, e.guest);
    }
    return out;
  }

  /** What is left: after `teardown()` (or after every user unmapped and every bind went), nothing. */
  leftovers(): VmmFinding[] {
    const out: VmmFinding[] = [];
    for (const e of this.entries()) {
      const users = e.users.length ? `used by ${e.users.map((u) => `${u.name} (${u.refs})`).join(', ')}` : 'allocated by ALLOC_PASID and never freed';
      out.push(this.finding('leftover', `guest PASID ${e.guest} still maps to host PASID ${e.host}, ${users}`, e.guest, e.host));
    }
    for (const [device, mine] of [...this.binds].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      for (const [h, g] of mine) out.push(this.finding('leftover', `${device} still has host PASID ${h} bound to guest PASID ${g}`, g, h));
    }
    return out;
  }

  /** VM destruction: every bind undone, every user dropped, every host PASID back to the allocator. */
  teardown(): void {
    this.binds.clear();
    for (const e of [...this.byGuest.values()]) {
      e.users.clear();
      this.removeEntry(e);
    }
  }

  // ---- live migration ----

  exportGuestState(): GuestPasidState {
    return {
      vm: this.vm,
      policy: this.policy,
      globalMin: this.split?.globalMin ?? null,
      entries: this.entries().map((e) => ({ guest: e.guest, vcmd: e.vcmd, users: e.users.map((u) => ({ ...u })) })),
    };
  }

  /**
   * The destination's table from the migrated guest state: the same guest PASIDs and users, each with a
   * host PASID allocated afresh on the destination (lowest guest PASID first, so it is deterministic).
   */
  static restore(state: GuestPasidState, opts: DestinationOptions): PasidMap {
    const split = state.globalMin === null ? undefined : new PasidSplit(state.globalMin);
    const map = new PasidMap({ ...opts, vm: state.vm, policy: state.policy, ...(split ? { split } : {}) });
    for (const s of [...state.entries].sort((a, b) => a.guest - b.guest)) {
      map.guestIds.take(s.guest);
      const entry = map.createEntry(s.guest, s.vcmd);
      for (const u of s.users) {
        if (!Number.isInteger(u.refs) || u.refs < 1) fail('EINVAL', `${state.vm}: ${u.name} holds ${u.refs} references to guest PASID ${s.guest}`);
        entry.users.set(u.name, u.refs);
      }
    }
    return map;
  }

  /**
   * Migration in one step: only `exportGuestState()` crosses, the destination re-allocates host PASIDs from
   * `opts.allocator`; returns the destination's table and the source's host PASIDs → the destination's.
   */
  rebuild(opts: DestinationOptions): { map: PasidMap; hostRemap: Map<number, number> } {
    const map = PasidMap.restore(this.exportGuestState(), opts);
    const hostRemap = new Map<number, number>();
    for (const e of this.byGuest.values()) hostRemap.set(e.host, map.byGuest.get(e.guest)!.host);
    return { map, hostRemap };
  }

  // ---- internals ----

  /** The entry for a guest PASID already taken in `guestIds`; gives the claim back if no host PASID comes. */
  private createEntry(guest: number, vcmd: boolean): Entry {
    let host: number;
    if (this.policy === 'identity') host = guest;
    else {
      try {
        host = this.split ? this.split.allocGlobal(this.allocator!, this.deviceList) : this.allocator!.allocGlobal(this.deviceList, FIRST_GLOBAL_PASID);
      } catch (e) {
        this.guestIds.free(guest);
        throw e;
      }
      for (const e of this.byGuest.values()) {
        if (e.host === host) this.note('not-bijective', `host PASID ${host} handed out for guest PASID ${guest} already belongs to guest PASID ${e.guest}`, guest, host);
      }
    }
    const still = this.attachedBy(host);
    if (still.length) this.note('host-pasid-reused', `host PASID ${host} handed out for guest PASID ${guest} while ${still.join(', ')}`, guest, host);
    const entry: Entry = { guest, host, users: new Map(), vcmd };
    this.byGuest.set(guest, entry);
    return entry;
  }

  private removeEntry(entry: Entry): void {
    const still = this.attachedBy(entry.host);
    if (still.length) {
      this.note('host-pasid-freed-while-attached', `host PASID ${entry.host} of guest PASID ${entry.guest} released while ${still.join(', ')}`, entry.guest, entry.host);
    }
    this.byGuest.delete(entry.guest);
    this.guestIds.free(entry.guest);
    if (this.policy === 'non-identity') this.allocator!.freeGlobal(entry.host);
  }

  /** Who still has `host` in use: devices with a bind at it and holders that map it. */
  private attachedBy(host: number): string[] {
    const out: string[] = [];
    for (const [device, mine] of this.binds) if (mine.has(host)) out.push(`${device} has it bound`);
    for (const h of this.holders) if (h.holds(host)) out.push(`${h.holderName} maps it`);
    return out;
  }

  private finding(code: VmmFindingCode, message: string, guestPasid?: number, hostPasid?: number): VmmFinding {
    return {
      code,
      vm: this.vm,
      message: `${this.vm}: ${message}`,
      ...(guestPasid !== undefined ? { guestPasid } : {}),
      ...(hostPasid !== undefined ? { hostPasid } : {}),
    };
  }

  private note(code: VmmFindingCode, message: string, guestPasid?: number, hostPasid?: number): VmmFinding {
    const f = this.finding(code, message, guestPasid, hostPasid);
    this.findings.push(f);
    return f;
  }
}

function usersOf(e: Entry): { name: string; refs: number }[] {
  return [...e.users].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([name, refs]) => ({ name, refs }));
}
