/**
 * The vendor-neutral face of the IOMMU model. A VT-d unit implements it today; SMMUv3 and AMD-Vi backends
 * implement the same interface (see docs/ARCHITECTURE.md, "The hardware model"): what differs between vendors
 * is how a device and an address space are looked up (root/context/PASID tables, stream table/CD, device
 * table/GCR3), how faults are recorded (FRCD, event queue, event log) and how invalidation is submitted (QI,
 * command queue, command buffer). The request, the result and the walk trace are common.
 */
import type { U64 } from '../u64';
import type { Endpoint } from './endpoint';
import type { EventStream } from './events';
import type { PhysicalMemory } from './memory';

export type Vendor = 'intel' | 'amd' | 'arm';

/** What a DMA request asks for. Numbers are small (<2^32) except `addr`, which may use all 64 bits. */
export interface DmaRequest {
  /** Requester ID (source-id): bus[15:8] dev[7:3] fn[2:0]. */
  readonly sid: number;
  /** PASID if the request carries a PASID TLP prefix; undefined for requests without PASID. */
  readonly pasid?: number;
  /** Input address: an exact number below 2^53, or a U64 for canonical upper-half addresses. */
  readonly addr: number | U64;
  readonly write?: boolean;
  readonly exec?: boolean;
  /** Privileged (supervisor) request; meaningful only with a PASID. */
  readonly priv?: boolean;
  /**
   * `untranslated`: ordinary DMA. `translation-request`: an ATS translation request from a device TLB;
   * faults are returned to the device, not recorded. `translated`: DMA with an address the device TLB
   * already translated; it is checked against the context (DTE/TT) and passed through.
   */
  readonly kind?: 'untranslated' | 'translation-request' | 'translated';
}

export interface Permissions {
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
}

/** Where a translation came from. */
export type TranslationSource = 'walk' | 'iotlb' | 'device-tlb' | 'pass-through' | 'translated';

/** One step of a walk: which structure, where, which entry, its raw value and what it said. */
export interface WalkStep {
  /** e.g. `root-entry`, `context-entry`, `pasid-dir-entry`, `pasid-entry`, `sl-pml4e`, `fl-pte`, `iotlb`. */
  readonly structure: string;
  /** Which stage the step belongs to in a nested walk: 1 = first level (guest), 2 = second level. */
  readonly stage?: 1 | 2;
  /** Level in the page table (5..1) for paging entries. */
  readonly level?: number;
  /** Physical address of the table (hex), when the step reads memory. */
  readonly table?: string;
  readonly index?: number;
  /** Physical address of the entry that was read (hex). */
  readonly entryAddress?: string;
  /** The raw entry value as 64-bit hex words, lowest word first (a PASID entry has 8). */
  readonly raw: readonly string[];
  /** The entry's fields, decoded (name -> value). */
  readonly fields: Readonly<Record<string, number | boolean | string>>;
  /** The check this step made and whether it passed, in words. */
  readonly check: string;
  readonly ok: boolean;
  /** Set when the step used a cached copy rather than memory. */
  readonly cached?: CacheName;
  /** For a nested walk, the second-level translation of this step's guest-physical pointer. */
  readonly nestedTrace?: readonly WalkStep[];
}

/** The caches a step can be served from (the interrupt entry cache holds interrupt-remapping entries). */
export type CacheName = 'context-cache' | 'pasid-cache' | 'iotlb' | 'paging-structure-cache' | 'device-tlb' | 'interrupt-entry-cache';

/** A cached entry was used although memory has changed under it: the bug class of missing invalidation. */
export interface StaleUse {
  readonly cache: CacheName;
  /** The entry in memory that no longer matches what was cached (hex), and both values. */
  readonly entryAddress: string;
  readonly cached: readonly string[];
  readonly memory: readonly string[];
  readonly message: string;
}

export interface TranslationOk {
  readonly ok: true;
  /** Host physical address as hex (`0x...`): the form that crosses process and webview boundaries. */
  readonly output: string;
  /** The same address as a number: exact, since physical addresses have at most 52 bits. */
  readonly address: number;
  readonly pageSize: number;
  readonly perms: Permissions;
  readonly source: TranslationSource;
  /** The cache tag: domain ID (and PASID for first-level and nested). */
  readonly did?: number;
  readonly stale?: StaleUse;
  readonly trace?: readonly WalkStep[];
  /** Memory reads the walk made (0 for a cache hit). */
  readonly reads: number;
}

export interface TranslationFault {
  readonly ok: false;
  /** Vendor fault reason code (VT-d: FRCD.FR). */
  readonly reason: number;
  readonly reasonText: string;
  /** False when FPD suppressed recording, or the request was an ATS translation request. */
  readonly recorded: boolean;
  /** Fault recording register index, when recorded. */
  readonly frcdIndex?: number;
  readonly stale?: StaleUse;
  readonly trace?: readonly WalkStep[];
  readonly reads: number;
}

export type TranslationResult = TranslationOk | TranslationFault;

/**
 * A translation's outcome as plain fields that a unit fills in place (`IommuUnit.translateInto`), so that a
 * translation makes no object: for callers that translate in a loop (a device model, a benchmark). `did` and
 * `frcdIndex` are -1 when there is none; the fault fields mean something only when `ok` is false, the others
 * only when it is true. `newTranslationRecord` (hw/translation-result.ts) makes one and `resultOf` turns it
 * into the TranslationResult `translate` returns.
 */
export interface TranslationRecord {
  ok: boolean;
  address: number;
  pageSize: number;
  perms: Permissions;
  source: TranslationSource;
  did: number;
  reason: number;
  reasonText: string;
  recorded: boolean;
  frcdIndex: number;
  stale: StaleUse | undefined;
  trace: readonly WalkStep[] | undefined;
  reads: number;
}

export interface TranslateOptions {
  /** Build the walk trace (costs time; nothing when false). */
  readonly trace?: boolean;
}

/** A page request as PCIe PRI carries it, vendor-neutral (VT-d PRQ, SMMUv3 PRIQ, AMD PPR log). */
export interface PriRequest {
  readonly rid: number;
  readonly pasid?: number;
  readonly address: number;
  readonly read: boolean;
  readonly write: boolean;
  readonly exec: boolean;
  readonly priv: boolean;
  readonly lastInGroup: boolean;
  readonly prgIndex: number;
}

// ---- interrupt remapping ----

/**
 * An interrupt request as it reaches the IOMMU: a device's DWORD write to the interrupt address range
 * 0xfee00000-0xfeefffff (an MSI or MSI-X message, or an I/O APIC message in the same format).
 */
export interface InterruptRequest {
  /** Requester ID (source-id) of the write. */
  readonly sid: number;
  /** The message address (0xfeeXXXXX); what its bits mean depends on the format bit (VT-d: bit 4). */
  readonly address: number;
  /** The message data (32 bits). */
  readonly data: number;
}

/** What reaches the local APICs: the interrupt after remapping, or as the request carried it. */
export interface InterruptDelivery {
  readonly vector: number;
  /** APIC ID: 8 bits in xAPIC mode, 32 bits in x2APIC mode. */
  readonly destination: number;
  readonly destinationMode: 'physical' | 'logical';
  readonly deliveryMode: 'fixed' | 'lowest-priority' | 'smi' | 'nmi' | 'init' | 'extint' | 'reserved';
  readonly triggerMode: 'edge' | 'level';
  readonly redirectionHint: boolean;
}

interface InterruptResultBase {
  /** Interrupt-remapping table index, for a request in remappable format. */
  readonly index?: number;
  readonly stale?: StaleUse;
  readonly trace?: readonly WalkStep[];
  /** Memory reads made: the IRTE's (none when served from the interrupt entry cache), and a posted interrupt's descriptor. */
  readonly reads: number;
}

/** Remapped through an entry in remapped format: delivered as the entry says. */
export interface InterruptRemapped extends InterruptResultBase, InterruptDelivery {
  readonly ok: true;
  readonly outcome: 'remapped';
  readonly index: number;
  readonly source: 'walk' | 'interrupt-entry-cache';
}

/**
 * Remapped through an entry in posted format: posted to a descriptor in memory (VT-d posted interrupts). The
 * hardware set PIR[vector] in the descriptor, and ON with a notification event (NV to NDST) when ON was clear
 * and the entry is urgent or SN is clear.
 */
export interface InterruptPosted extends InterruptResultBase {
  readonly ok: true;
  readonly outcome: 'posted';
  readonly index: number;
  readonly source: 'walk' | 'interrupt-entry-cache';
  /** Physical address of the posted-interrupt descriptor (hex). */
  readonly descriptor: string;
  /** The entry's virtual vector: the PIR bit that was set. */
  readonly vector: number;
  readonly urgent: boolean;
  /** PIR[vector] was already set: the interrupt merged with one still pending. */
  readonly pirWasSet: boolean;
  /** ON and SN as the hardware read them. */
  readonly onWasSet: boolean;
  readonly suppressNotification: boolean;
  /**
   * `sent`: ON was clear and URG = 1 or SN = 0, so ON is now set and the notification event went out;
   * `outstanding`: ON was already set, no new notification; `suppressed`: SN = 1 and URG = 0, ON stays clear.
   */
  readonly notification: 'sent' | 'outstanding' | 'suppressed';
  /** The descriptor's NV, and its NDST as an APIC ID (NDST[15:8] in xAPIC mode, all 32 bits in x2APIC mode). */
  readonly notificationVector: number;
  readonly notificationDestination: number;
}

/** Not remapped: remapping is off, or a compatibility-format request that the unit lets through. */
export interface InterruptPassThrough extends InterruptResultBase, InterruptDelivery {
  readonly ok: true;
  readonly outcome: 'pass-through';
  readonly why: 'remapping-disabled' | 'compatibility-format';
}

export interface InterruptFault extends InterruptResultBase {
  readonly ok: false;
  readonly outcome: 'fault';
  /** Vendor fault reason code (VT-d: FRCD.FR, 0x20-0x28). */
  readonly reason: number;
  readonly reasonText: string;
  /** False when the entry's FPD suppressed recording (or for a probe). */
  readonly recorded: boolean;
  readonly frcdIndex?: number;
}

export type InterruptResult = InterruptRemapped | InterruptPosted | InterruptPassThrough | InterruptFault;

/**
 * What the platform needs from an IOMMU unit, whatever its vendor. The lookup structures, fault records and
 * invalidation interfaces differ (see the table in docs/ARCHITECTURE.md); the request and its outcome do not.
 */
export interface IommuUnit {
  readonly name: string;
  readonly vendor: Vendor;
  /** The PCI segment (domain) whose requesters the unit serves: requester IDs are unique only within one. */
  readonly segment: number;
  /** Translates as the hardware would: caches used and filled, faults recorded, events emitted. */
  translate(request: DmaRequest, options?: TranslateOptions): TranslationResult;
  /** `translate` without a trace, its outcome left in `out` (reused by the caller): returns `out.ok`. */
  translateInto(request: DmaRequest, out: TranslationRecord): boolean;
  /** The translation the tables give now, with no side effect at all. */
  probe(request: DmaRequest, options?: TranslateOptions): TranslationResult;
  /** An interrupt request from an endpoint behind this unit (units with interrupt remapping). */
  interrupt?(request: InterruptRequest, options?: TranslateOptions): InterruptResult;
  /** A PRI page request from an endpoint behind this unit. */
  receivePageRequest(request: PriRequest): 'queued' | 'overflow' | 'rejected';
  /** Lets the unit reach endpoints by requester ID in its segment (device-TLB invalidation, page responses). */
  connect(endpointOf: (sid: number) => Endpoint | undefined): void;
  /** Everything but memory (which the platform snapshots), for stepping backwards. */
  capture(): unknown;
  restore(state: unknown): void;
}

/**
 * How a vendor's units are made: the machine knows only this and `IommuUnit`. Each vendor folder exports one
 * (VT-d: `vtdUnits` in vtd/factory.ts), with its own configuration type; `U` is the unit type it makes, so
 * `machine.addUnit(vtdUnits, config)` returns a VT-d unit without the machine knowing what that is.
 */
export interface IommuUnitFactory<C, U extends IommuUnit = IommuUnit> {
  readonly vendor: Vendor;
  /** A unit over `memory` (the address space it walks and its queues live in), emitting into `events`. */
  create(memory: PhysicalMemory, events: EventStream, config: C): U;
}
