import { faultRecordingCount } from '../vtd/cap';
import { enablePageRequests, enableTranslation, setRootTable, writeLegacyRootEntry, writeScalableRootEntry } from '../vtd/tables';
import type { VtdUnit } from '../vtd/unit';
import { Ida } from './ida';
import type { DriverFinding } from './findings';
import type { KernelLog, KernelVersion } from './log';
import { QueuedInvalidation } from './qi';

/** Linux PRQ_ORDER: a 16-page (64 KiB) page request queue. */
export const PRQ_ORDER = 4;
/** DID 1: identity and SVA domains (Linux FLPT_DEFAULT_DID). DID 0 is reserved. */
export const FLPT_DEFAULT_DID = 1;

/**
 * What the VT-d driver keeps per IOMMU unit (Linux `struct intel_iommu`): the root and context tables it
 * built, its domain-ID allocator, its invalidation queue and page request queue.
 */
export class IntelIommu {
  readonly rootTable: number;
  readonly scalable: boolean;
  readonly qi: QueuedInvalidation;
  /** Domain IDs 2..ND-1 (0 reserved, 1 = FLPT_DEFAULT_DID). */
  readonly dids: Ida;
  readonly prqBase: number;
  /** Context tables per bus: scalable mode has one per half (devfn 0x00-0x7f, 0x80-0xff). */
  private readonly contextTables = new Map<number, { lower?: number; upper?: number }>();

  constructor(
    readonly unit: VtdUnit,
    readonly seq: number,
    log: KernelLog,
    scalable: boolean,
    version: KernelVersion = '6.12',
    findings: DriverFinding[] = [],
  ) {
    const mem = unit.memory;
    this.scalable = scalable && unit.ecap.smts === 1;
    const nd = 2 ** (4 + 2 * unit.cap.nd);
    this.dids = new Ida(2, nd - 1, `domain ID on ${unit.name}`);
    this.rootTable = mem.allocPage();
    this.qi = new QueuedInvalidation(unit, log, version, findings);
    // init_dmars: a page request queue where pasid_supported() and ECAP.PRS.
    this.prqBase = this.pasidSupported && unit.ecap.prs ? mem.allocContiguous(2 ** PRQ_ORDER) : 0;
    if (this.prqBase) enablePageRequests(unit, this.prqBase, PRQ_ORDER);
    setRootTable(unit, this.rootTable, this.scalable);
    // Fault and page-request interrupts unmasked, as the driver's request_irq does.
    unit.writeRegister('FECTL', 0);
    unit.writeRegister('PECTL', 0);
    enableTranslation(unit);
  }

  /** Linux `pasid_supported(iommu)`: scalable mode and ECAP.PASID. */
  get pasidSupported(): boolean {
    return this.scalable && this.unit.ecap.pasid === 1;
  }

  /**
   * Linux VTD_FLAG_SVM_CAPABLE, as intel_svm_check decides it at boot (6.17): PASID support, 1 GiB
   * first-level pages if the CPU has them (GBPAGES), 5-level first-level paging if the CPU runs it (LA57).
   */
  svmCapable = false;

  /**
   * The lines init_dmars prints per unit once it is up (intel_iommu_init_qi, then intel_svm_check). Printed
   * after interrupt remapping is set up, which Linux does earlier at boot (with the APIC), so its `DMAR-IR:`
   * lines come first.
   */
  announce(log: KernelLog, cpu: { readonly gbpages: boolean; readonly la57: boolean }): void {
    log.info(`DMAR: ${this.unit.name}: Using Queued invalidation`);
    if (faultRecordingCount(this.unit.cap) < 1) log.warn(`DMAR: ${this.unit.name}: no fault recording registers`);
    if (!this.pasidSupported) return;
    if (cpu.gbpages && !this.unit.cap.fl1gp) log.err(`${this.unit.name} SVM disabled, incompatible 1GB page capability`);
    else if (cpu.la57 && !this.unit.cap.fl5lp) log.err(`${this.unit.name} SVM disabled, incompatible paging mode`);
    else this.svmCapable = true;
  }

  get name(): string {
    return this.unit.name;
  }

  /** The IOMMU's own address width index for AW fields: the largest SAGAW level within MGAW (Linux iommu->agaw). */
  get agaw(): number {
    const mgaw = this.unit.cap.mgaw + 1;
    for (let aw = 3; aw >= 1; aw--) if ((this.unit.cap.sagaw >>> aw) & 1 && 30 + 9 * aw <= Math.max(mgaw, 39)) return aw;
    return 2;
  }

  /**
   * Linux iommu->msagaw (iommu_calculate_max_sagaw): the largest AGAW of __iommu_calculate_sagaw, whatever
   * MGAW says; the AW of a legacy pass-through context entry. SAGAW is CAP.SAGAW unless the unit runs
   * scalable mode with first-level support: then its first-level widths (4-level, 5-level with CAP.FL5LP),
   * and with second-level support too, what both have.
   */
  get msagaw(): number {
    const unit = this.unit;
    const fl = (1 << 2) | (unit.cap.fl5lp ? 1 << 3 : 0);
    const sagaw = !this.scalable || !unit.ecap.flts ? unit.cap.sagaw : !unit.ecap.slts ? fl : fl & unit.cap.sagaw;
    for (let aw = 3; aw >= 0; aw--) if ((sagaw >>> aw) & 1) return aw;
    return -1;
  }

  /** Whether the hardware caches not-present entries (CAP.CM): every change must then be flushed. */
  get cachingMode(): boolean {
    return this.unit.cap.cm === 1;
  }

  /** The context table holding `devfn` on `bus`, created (and hooked into the root entry) on first use. */
  contextTable(bus: number, devfn: number): number {
    const mem = this.unit.memory;
    const t = this.contextTables.get(bus) ?? {};
    const upper = this.scalable && devfn >= 0x80;
    let table = upper ? t.upper : t.lower;
    if (table === undefined) {
      table = mem.allocPage();
      if (upper) t.upper = table;
      else t.lower = table;
      this.contextTables.set(bus, t);
      if (this.scalable) writeScalableRootEntry(mem, this.rootTable, bus, t.lower, t.upper);
      else writeLegacyRootEntry(mem, this.rootTable, bus, t.lower);
    }
    return table;
  }

  /** Context tables that exist, by bus, for dumps. */
  get contextTableMap(): ReadonlyMap<number, { lower?: number; upper?: number }> {
    return this.contextTables;
  }
}
