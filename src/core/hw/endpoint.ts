import { type PciAddress, formatPciAddress, pciRid } from '../pci';

/**
 * A PCIe endpoint as the IOMMU sees it: its requester ID, its ATS, PRI and PASID capabilities (what
 * `lspci -vvv` shows), the device TLB that ATS gives it, and the page request groups it has outstanding.
 * Vendor-neutral: ATS, PRI and PASID are PCIe, whichever IOMMU sits above.
 */

export interface EndpointCapabilities {
  /** ATS capability; `invalidateQueueDepth` 0 means 32, as lspci prints it. */
  readonly ats?: { readonly invalidateQueueDepth?: number };
  /** PRI capability: outstanding page request capacity. */
  readonly pri?: { readonly capacity?: number };
  /** PASID capability: Max PASID Width (bits), Exec and Priv support. */
  readonly pasid?: { readonly width: number; readonly exec?: boolean; readonly priv?: boolean };
}

export interface DeviceTlbEntry {
  /** PASID the translation was for; -1 without PASID. */
  readonly pasid: number;
  readonly base: number;
  readonly size: number;
  readonly output: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
  /** Memory write count when last confirmed to match a fresh translation. */
  verifiedAt: number;
}

/** An outstanding page request group: (PASID or none, PRG index) until its response arrives. */
export interface PendingGroup {
  readonly pasid: number;
  readonly prgIndex: number;
  readonly addresses: number[];
}

/**
 * PRI Status (PCIe Page Request Extended Capability, offset 0x06), as Linux's pci_regs.h names the bits:
 * Response Failure and Unexpected PRG Index are RW1C; Stopped is read-only and means something only while
 * Enable is clear.
 */
export const PCI_PRI_STATUS_RF = 0x0001;
export const PCI_PRI_STATUS_UPRGI = 0x0002;
export const PCI_PRI_STATUS_STOPPED = 0x0100;

export class Endpoint {
  readonly sid: number;
  readonly name: string;
  atsEnabled: boolean;
  pasidEnabled: boolean;
  /**
   * PRI Status RF (Response Failure): a PRG Response with Response Failure (1111b), or with an unused code
   * (0010b-1110b, which the Function processes as Response Failure), arrived. While it is set the device
   * sends no page request and ignores every PRG Response. It is RW1C (clearPriStatus) and PRI Control.Enable
   * going from clear to set clears it (setPriControl).
   */
  priResponseFailure = false;
  /** PRI Status UPRGI (Unexpected Page Request Group Index): a PRG Response named no outstanding group. RW1C. */
  priUnexpectedPrgIndex = false;
  private priEnable: boolean;
  /** PASID controls: whether the device may issue execute and privileged requests. */
  pasidExecEnabled: boolean;
  pasidPrivEnabled: boolean;
  private readonly tlb = new Map<string, DeviceTlbEntry>();
  private readonly groups = new Map<string, PendingGroup>();
  private nextPrgIndex = 0;
  /** An injected fault: the device does not complete ATS invalidations (the IOMMU reports ITE). */
  invalidationTimeout = false;

  constructor(
    readonly address: PciAddress,
    readonly caps: EndpointCapabilities,
  ) {
    this.sid = pciRid(address);
    this.name = formatPciAddress(address);
    this.atsEnabled = caps.ats !== undefined;
    this.priEnable = caps.pri !== undefined;
    this.pasidEnabled = caps.pasid !== undefined;
    this.pasidExecEnabled = caps.pasid?.exec ?? false;
    this.pasidPrivEnabled = caps.pasid?.priv ?? false;
  }

  /** Max PASIDs the device can emit: 2^width (0 without the capability). */
  get maxPasids(): number {
    return this.caps.pasid ? 2 ** this.caps.pasid.width : 0;
  }

  /** Invalidate Queue Depth as the dev-TLB descriptor carries it (lspci's 0 means 32; the field is 5 bits). */
  get atsQueueDepth(): number {
    const q = this.caps.ats?.invalidateQueueDepth ?? 0;
    return q === 0 ? 32 : q;
  }

  // ---- device TLB ----

  private static key(pasid: number, page: number): string {
    return `${pasid}:${page}`;
  }

  lookup(pasid: number, addr: number): DeviceTlbEntry | undefined {
    for (const size of [4096, 0x20_0000, 0x4000_0000]) {
      const e = this.tlb.get(Endpoint.key(pasid, Math.floor(addr / size) * size));
      if (e && e.size === size) return e;
    }
    return undefined;
  }

  fill(entry: DeviceTlbEntry): void {
    this.tlb.set(Endpoint.key(entry.pasid, entry.base), entry);
  }

  /**
   * Drops cached translations that overlap [base, base+size) for `pasid` (-1 and `allPasids` false: the
   * non-PASID entries only; `allPasids`: every PASID, as a global PASID-based invalidation does).
   */
  invalidate(pasid: number, base: number, size: number, allPasids = false): number {
    let dropped = 0;
    for (const [k, e] of this.tlb) {
      if (!allPasids && e.pasid !== pasid) continue;
      if (e.base < base + size && base < e.base + e.size) {
        this.tlb.delete(k);
        dropped++;
      }
    }
    return dropped;
  }

  get deviceTlbEntries(): readonly DeviceTlbEntry[] {
    return [...this.tlb.values()];
  }

  // ---- page request groups ----

  /** The PRG index for a new group: the device picks it; any free 9-bit value, or -1 when all 512 are outstanding. */
  allocatePrgIndex(pasid: number): number {
    for (let i = 0; i < 512; i++) {
      const idx = (this.nextPrgIndex + i) & 0x1ff;
      if (!this.groups.has(`${pasid}:${idx}`)) {
        this.nextPrgIndex = (idx + 1) & 0x1ff;
        return idx;
      }
    }
    return -1;
  }

  /**
   * Why the device cannot send a page request now (with a PASID prefix when `pasid` is given), or undefined
   * when it can. PCIe: a Function issues Page Requests only while PRI Control.Enable is set and PRI
   * Status.RF is clear, and a TLP with a PASID prefix only while PASID Control.Enable is set.
   */
  pageRequestRefusal(pasid: number | undefined): string | undefined {
    if (!this.caps.pri) return `${this.name} has no PRI capability: it cannot send page requests`;
    if (!this.priEnable) return `PRI is disabled on ${this.name} (PRI Control.Enable = 0): it cannot send page requests`;
    if (this.priResponseFailure) return `${this.name} stopped sending page requests after a Response Failure (PRI Status.RF = 1)`;
    if (pasid !== undefined && !this.pasidEnabled) return `PASID is disabled on ${this.name} (PASID Control.Enable = 0): it cannot send a page request with a PASID`;
    return undefined;
  }

  get outstandingRequests(): number {
    let n = 0;
    for (const g of this.groups.values()) n += g.addresses.length;
    return n;
  }

  get pendingGroups(): readonly PendingGroup[] {
    return [...this.groups.values()];
  }

  addRequest(pasid: number, prgIndex: number, address: number): void {
    const k = `${pasid}:${prgIndex}`;
    const g = this.groups.get(k) ?? { pasid, prgIndex, addresses: [] };
    g.addresses.push(address);
    this.groups.set(k, g);
  }

  // ---- PRI Control and Status (PCIe Page Request Extended Capability) ----

  /** PRI Control.Enable. Setting it is a write of Enable alone (setPriControl). */
  get priEnabled(): boolean {
    return this.priEnable;
  }

  set priEnabled(on: boolean) {
    this.setPriControl(on);
  }

  /**
   * A write of PRI Control: Enable, and Reset. Enable going from clear to set clears the status flags (RF,
   * UPRGI; Stopped is only defined while Enable is clear). Reset, written while Enable is clear or is being
   * cleared by the same write, drops the pending request state: every outstanding page request group is
   * forgotten, answered or not. Written with Enable set, Reset does nothing.
   */
  setPriControl(enable: boolean, reset = false): void {
    if (enable && !this.priEnable) {
      this.priResponseFailure = false;
      this.priUnexpectedPrgIndex = false;
    }
    this.priEnable = enable;
    if (reset && !enable) this.groups.clear();
  }

  /**
   * PRI Status: RF, UPRGI, and Stopped when Enable is clear and no page request is outstanding (a Response
   * Failure leaves groups outstanding, since the responses to them are ignored: only a Reset stops PRI then).
   */
  get priStatus(): number {
    return (this.priResponseFailure ? PCI_PRI_STATUS_RF : 0) | (this.priUnexpectedPrgIndex ? PCI_PRI_STATUS_UPRGI : 0) | (!this.priEnable && this.groups.size === 0 ? PCI_PRI_STATUS_STOPPED : 0);
  }

  /** A write to PRI Status: 1s in RF and UPRGI clear them (RW1C); Stopped is read-only. */
  clearPriStatus(bits: number): void {
    if (bits & PCI_PRI_STATUS_RF) this.priResponseFailure = false;
    if (bits & PCI_PRI_STATUS_UPRGI) this.priUnexpectedPrgIndex = false;
  }

  /** Whether the device may send page requests: PRI enabled and no Response Failure pending. */
  get issuesPageRequests(): boolean {
    return this.priEnable && !this.priResponseFailure;
  }

  /**
   * A PRG Response arrived, with the PCIe Response Code: 0000b Success, 0001b Invalid Request, 1111b
   * Response Failure; the unused codes 0010b-1110b are processed as Response Failure. A Response Failure
   * completes its group and disables PRI (RF); once RF is set, responses are ignored, so the other
   * outstanding groups stay outstanding. A response for no outstanding group sets UPRGI and is otherwise
   * ignored. Returns the group completed, if any.
   */
  completeGroup(pasid: number, prgIndex: number, code: number): PendingGroup | undefined {
    if (this.priResponseFailure) return undefined;
    const k = `${pasid}:${prgIndex}`;
    const g = this.groups.get(k);
    if (!g) {
      this.priUnexpectedPrgIndex = true;
      return undefined;
    }
    this.groups.delete(k);
    if (code !== 0 && code !== 1) this.priResponseFailure = true;
    return g;
  }

  // ---- snapshots ----

  capture(): EndpointState {
    return {
      atsEnabled: this.atsEnabled,
      priEnabled: this.priEnabled,
      pasidEnabled: this.pasidEnabled,
      priResponseFailure: this.priResponseFailure,
      priUnexpectedPrgIndex: this.priUnexpectedPrgIndex,
      pasidExecEnabled: this.pasidExecEnabled,
      pasidPrivEnabled: this.pasidPrivEnabled,
      tlb: [...this.tlb.entries()].map(([k, e]) => [k, { ...e }] as const),
      groups: [...this.groups.entries()].map(([k, g]) => [k, { ...g, addresses: g.addresses.slice() }] as const),
      nextPrgIndex: this.nextPrgIndex,
      invalidationTimeout: this.invalidationTimeout,
    };
  }

  restore(s: EndpointState): void {
    this.atsEnabled = s.atsEnabled;
    this.priEnable = s.priEnabled;
    this.pasidEnabled = s.pasidEnabled;
    this.priResponseFailure = s.priResponseFailure;
    this.priUnexpectedPrgIndex = s.priUnexpectedPrgIndex;
    this.pasidExecEnabled = s.pasidExecEnabled;
    this.pasidPrivEnabled = s.pasidPrivEnabled;
    this.tlb.clear();
    for (const [k, e] of s.tlb) this.tlb.set(k, { ...e });
    this.groups.clear();
    for (const [k, g] of s.groups) this.groups.set(k, { ...g, addresses: g.addresses.slice() });
    this.nextPrgIndex = s.nextPrgIndex;
    this.invalidationTimeout = s.invalidationTimeout;
  }
}

export interface EndpointState {
  readonly atsEnabled: boolean;
  readonly priEnabled: boolean;
  readonly pasidEnabled: boolean;
  readonly priResponseFailure: boolean;
  readonly priUnexpectedPrgIndex: boolean;
  readonly pasidExecEnabled: boolean;
  readonly pasidPrivEnabled: boolean;
  readonly tlb: readonly (readonly [string, DeviceTlbEntry])[];
  readonly groups: readonly (readonly [string, PendingGroup])[];
  readonly nextPrgIndex: number;
  readonly invalidationTimeout: boolean;
}
