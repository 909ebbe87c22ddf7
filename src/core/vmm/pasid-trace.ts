/**
 * Every guest/host PASID lookup, with who made it and how. Seed 000 fixes the fast directions: the VMM
 * (QEMU) looks up G-to-H, the host IOMMU driver looks up H-to-G from the private data it kept at bind time,
 * and the driver's G-to-H is a reverse search for the slow path only. The trace lets a test or a view check
 * that a flow used the fast lookup where it should (a reverse search on the page-request path is the
 * performance bug seed 000 designs against).
 */
export type LookupSide = 'guest' | 'vmm' | 'host-driver' | 'vdcm' | 'cpu';
export type LookupDirection = 'G-to-H' | 'H-to-G';
/** `fast`: a keyed lookup; `reverse`: a search over the other direction's table. */
export type LookupKind = 'fast' | 'reverse';

export interface PasidLookup {
  readonly side: LookupSide;
  readonly direction: LookupDirection;
  readonly kind: LookupKind;
  readonly vm: string;
  /** The PASID looked up (guest for G-to-H, host for H-to-G). */
  readonly from: number;
  /** What it translated to, undefined on a miss. */
  readonly to: number | undefined;
  /** The device whose bind was consulted, for the host driver's lookups. */
  readonly device?: string;
  /** Who asked, when another side calls the lookup (the VDCM calls the driver's `iommu_get_hpasid`). */
  readonly requester?: LookupSide;
  /** What the lookup served: 'page request', 'page response', 'PASID-cache flush', 'ENQCMD', ... */
  readonly why?: string;
}

/** An append-only list of lookups that several tables of one VM can share, so their order is kept. */
export class PasidTrace {
  private readonly entries: PasidLookup[] = [];

  record(lookup: PasidLookup): void {
    this.entries.push(lookup);
  }

  get all(): readonly PasidLookup[] {
    return this.entries;
  }

  /** Returns the lookups recorded so far and forgets them. */
  take(): PasidLookup[] {
    return this.entries.splice(0);
  }
}
