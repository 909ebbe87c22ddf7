import type { IoPageTable } from '../vtd/page-table';
import type { DeviceInfo } from './device';
import type { IntelIommu } from './intel-iommu';
import type { Process } from './process';

/**
 * An IOMMU domain, as the Linux IOMMU core and the VT-d driver know it: an address space (or a rule such as
 * "block everything"), the domain IDs it holds on each IOMMU, the cache tags that say which (DID, PASID,
 * device) combinations must be flushed when it changes, and where it is attached.
 */

export type DomainType = 'blocked' | 'identity' | 'paging' | 'nested' | 'sva';
/** First stage: IA-32e-format tables (PGTT 1); second stage: EPT-like tables (PGTT 2). */
export type Stage = 'first' | 'second';

/** User data of a VT-d nested domain (`struct iommu_hwpt_vtd_s1`). */
export interface VtdS1 {
  readonly sre: boolean;
  readonly eafe: boolean;
  readonly wpe: boolean;
  /** Guest-physical address of the guest's first-level root table. */
  readonly pgtblAddr: number;
  readonly addrWidth: number;
}

export type CacheTagType = 'iotlb' | 'devtlb' | 'nesting_iotlb' | 'nesting_devtlb';

/** What must be flushed, and where, when the domain's tables change (Linux `struct cache_tag`). */
export interface CacheTag {
  readonly type: CacheTagType;
  readonly iommu: IntelIommu;
  readonly did: number;
  readonly pasid: number;
  readonly device: DeviceInfo;
  users: number;
}

/** A (device, PASID) attached to a domain; PASID undefined is the RID itself. */
export interface Attachment {
  readonly device: DeviceInfo;
  readonly pasid?: number;
  /** Shown in the attachment tree, e.g. "nested for vm1 process1". */
  readonly note?: string;
  /** Per-attachment data the fault path hands back (seed 000: the guest PASID of a host PASID). */
  readonly privateData?: Readonly<Record<string, number | string>>;
}

/** A recoverable fault (page request) as the IOMMU core reports it (`struct iopf_fault`). */
export interface PageFault {
  readonly device: DeviceInfo;
  readonly pasid?: number;
  readonly address: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
  readonly prgIndex: number;
  readonly lastPage: boolean;
  readonly privateData?: Readonly<Record<string, number | string>>;
}

/** An unrecoverable fault (from the fault recording registers), reported to the domain's fault handlers. */
export interface DmaFault {
  readonly device: DeviceInfo;
  readonly pasid?: number;
  readonly address: string;
  readonly reason: number;
  readonly reasonText: string;
  readonly write: boolean;
  readonly privateData?: Readonly<Record<string, number | string>>;
}

/** PCIe Page Request Group response codes. */
export type PageResponseCode = 'success' | 'invalid' | 'failure';

/**
 * How a domain answers a group of page requests: a response code now, or `deferred` when someone answers
 * later with `pageResponse` (iommufd fault queues, a VMM forwarding to its guest).
 */
export type IopfHandler = (group: readonly PageFault[]) => PageResponseCode | 'deferred';
export type FaultHandler = (fault: DmaFault) => void;

export interface DomainOptions {
  /** Kernel-wide object number (the kernel hands them out, so runs are deterministic). */
  readonly id: number;
  readonly type: DomainType;
  readonly name?: string;
  readonly description?: string;
  readonly stage?: Stage;
  readonly nestParent?: boolean;
  /** Allocated with IOMMU_HWPT_ALLOC_DIRTY_TRACKING: the domain has dirty ops (Linux `domain->dirty_ops`). */
  readonly dirtyOps?: boolean;
  readonly pageTable?: IoPageTable;
  readonly addressWidth?: number;
  readonly parent?: Domain;
  readonly s1?: VtdS1;
  readonly process?: Process;
  /** Page sizes the domain maps with (`domain->pgsize_bitmap`), ascending; 4 KiB only by default. */
  readonly pgsizes?: readonly number[];
  /** `dmar_domain->iotlb_sync_map`, fixed at allocation from the allocating IOMMU (CM or RWBF). */
  readonly iotlbSyncMap?: boolean;
  /** `dmar_domain->iommu_coherency`: the allocating IOMMU's page-walk coherency (SMPWC, or C in legacy mode). */
  readonly coherent?: boolean;
}

export class Domain {
  readonly id: number;
  name: string;
  description: string;
  readonly type: DomainType;
  readonly stage: Stage | undefined;
  readonly nestParent: boolean;
  /**
   * Allocated for dirty tracking (Linux `domain->dirty_ops`): second stage only, refused on PASIDs and on
   * IOMMUs without ECAP.SLADS. Whether tracking is on is `dirtyTracking`.
   */
  readonly dirtyOps: boolean;
  /**
   * Dirty tracking is on (Linux `dmar_domain->dirty_tracking`): the PASID entries of the RIDs attached to
   * the domain (and, for a nest parent, to its nested children) have SSADE set. Off at allocation.
   */
  dirtyTracking = false;
  readonly pageTable: IoPageTable | undefined;
  /** Input address width (aperture = [0, 2^width)). */
  readonly addressWidth: number;
  readonly parent: Domain | undefined;
  readonly s1: VtdS1 | undefined;
  readonly process: Process | undefined;
  readonly pgsizes: readonly number[];
  readonly iotlbSyncMap: boolean;
  readonly coherent: boolean;
  /**
   * enforce_cache_coherency was done (`dmar_domain->force_snooping`): second-stage leaves get SNP from then
   * on (`set_pte_snp`), first-stage PASID entries get PGSNP.
   */
  forceSnooping = false;
  /** Something was mapped (`dmar_domain->has_mappings`): a second-stage domain can no longer enforce coherency. */
  hasMappings = false;
  /** Per IOMMU: the domain ID and how many attachments use it there. */
  readonly dids = new Map<IntelIommu, { did: number; refs: number }>();
  /** Cache tags by (type, IOMMU, DID, PASID[, device]); flushes order them IOTLB first per IOMMU. */
  readonly tags = new Map<string, CacheTag>();
  /** Attachments by (device, PASID), in attach order. */
  private readonly attached = new Map<string, Attachment>();
  /** Nested domains built over this nest parent. */
  readonly children: Domain[] = [];
  readonly faultHandlers: FaultHandler[] = [];
  iopfHandler: IopfHandler | undefined;
  freed = false;

  constructor(o: DomainOptions) {
    this.id = o.id;
    this.type = o.type;
    this.name = o.name ?? `${o.type}${this.id}`;
    this.description = o.description ?? '';
    this.stage = o.stage;
    this.nestParent = o.nestParent ?? false;
    this.dirtyOps = o.dirtyOps ?? false;
    this.pageTable = o.pageTable;
    this.addressWidth = o.addressWidth ?? 48;
    this.parent = o.parent;
    this.s1 = o.s1;
    this.process = o.process;
    this.pgsizes = o.pgsizes ?? [0x1000];
    this.iotlbSyncMap = o.iotlbSyncMap ?? false;
    this.coherent = o.coherent ?? true;
  }

  /**
   * Whether flushes of this domain's IOTLB tags use PASID-based descriptors: first-stage paging, SVA and
   * nested domains (first-level translations are PASID-tagged), as Linux does since the Dec-2025 fix.
   */
  get pasidBasedInvalidation(): boolean {
    return this.type === 'sva' || this.type === 'nested' || (this.type === 'paging' && this.stage === 'first');
  }

  get attachments(): Attachment[] {
    return [...this.attached.values()];
  }

  get attachmentCount(): number {
    return this.attached.size;
  }

  /** The devices whose RID is attached, newest first (Linux adds to `domain->devices` at the head). */
  get ridDevices(): DeviceInfo[] {
    const out: DeviceInfo[] = [];
    for (const a of this.attached.values()) if (a.pasid === undefined) out.unshift(a.device);
    return out;
  }

  attachedAt(device: DeviceInfo, pasid: number | undefined): Attachment | undefined {
    return this.attached.get(`${device.key}:${pasid ?? -1}`);
  }

  addAttachment(a: Attachment): void {
    this.attached.set(`${a.device.key}:${a.pasid ?? -1}`, a);
  }

  removeAttachment(device: DeviceInfo, pasid: number | undefined): void {
    this.attached.delete(`${device.key}:${pasid ?? -1}`);
  }

  setFaultHandler(handler: FaultHandler): void {
    this.faultHandlers.push(handler);
  }
}
