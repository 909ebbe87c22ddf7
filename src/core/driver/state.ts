import type { Machine } from '../hw/machine';
import { formatPciAddress, parsePciAddress, pciDeviceKey, pciFromRid, pciRid } from '../pci';
import { Attachments } from './attach';
import { Compat } from './compat';
import { DeviceInfo } from './device';
import { DirtyTracking } from './dirty-tracking';
import { Domain } from './domain';
import { DomainAlloc } from './domain-alloc';
import { fail } from './errors';
import type { DriverFinding } from './findings';
import type { IntelIommu } from './intel-iommu';
import { Interrupts } from './interrupts';
import { Iopf, type PendingGroup } from './iopf';
import type { IrqRemapping } from './irq-remapping';
import { CUT_HERE, KernelLog, type KernelVersion, mainlineVersion, Ratelimit } from './log';
import { Mapping } from './mapping';
import { Nesting } from './nested';
import { PasidAllocator } from './pasid-alloc';
import { PasidEntries } from './pasid-entries';
import type { Process } from './process';
import { Probe } from './probe';
import { PageRequests } from './prq';
import { Sva, type SvaHandle } from './sva';

export interface KernelOptions {
  /** Decides the printed formats (fault lines); defaults to 6.12. */
  readonly version?: KernelVersion;
  /** intel_iommu=sm_on: use scalable mode where the hardware has it (default true). */
  readonly scalableMode?: boolean;
  /** The default domain each device gets at probe: DMA (a paging domain), identity, or none (blocked). */
  readonly defaultDomain?: 'dma' | 'identity' | 'none';
  /**
   * intremap=on: set up interrupt remapping at boot (intel_irq_remapping.c) on units that all have ECAP.IR.
   * Off by default, so a model without it programs no IRTA and allocates no table.
   */
  readonly interruptRemapping?: boolean;
  /** Whether the platform runs x2APIC (EIME) when every unit supports it; default true. */
  readonly x2apic?: boolean;
  /**
   * CPU features the driver looks at (cpu_feature_enabled): GBPAGES (default on, as on every x86-64 server
   * part) and LA57 (5-level paging, default off; a 5-level process implies it). intel_svm_check makes a unit
   * SVM-capable only if its first-level paging matches them.
   */
  readonly cpu?: { readonly gbpages?: boolean; readonly la57?: boolean };
}

/**
 * What the parts of the kernel model share (kernel.ts composes them): the machine, the log, what the IOMMU
 * core and the driver keep (units, devices, domains, processes, bindings), the services every part uses
 * (device lookup, ratelimited call sites, WARNs) and the parts themselves, through which they call each
 * other. Only the parts and IommuKernel see it.
 */
export class KernelState {
  readonly log = new KernelLog();
  readonly version: KernelVersion;
  readonly iommus: IntelIommu[] = [];
  /**
   * The probed devices by (segment, RID) (pci.ts pciDeviceKey; DeviceInfo.key): two functions with the same
   * bus:device.function in two segments, behind two DRHDs, are two devices.
   */
  readonly devices = new Map<number, DeviceInfo>();
  readonly pasids = new PasidAllocator();
  readonly domains: Domain[] = [];
  readonly identity: Domain;
  readonly blocked: Domain;
  readonly processes: Process[] = [];
  readonly svaBindings: SvaHandle[] = [];
  irq: IrqRemapping | undefined;
  readonly findings: DriverFinding[] = [];
  readonly pendingGroups = new Map<string, PendingGroup>();

  readonly probe = new Probe(this);
  readonly alloc = new DomainAlloc(this);
  readonly entries = new PasidEntries(this);
  readonly compat = new Compat(this);
  readonly attach = new Attachments(this);
  readonly nested = new Nesting(this);
  readonly iopf = new Iopf(this);
  readonly prq = new PageRequests(this);
  readonly mapping = new Mapping(this);
  readonly sva = new Sva(this);
  readonly dirty = new DirtyTracking(this);
  readonly faults = new Interrupts(this);

  private nextId = 1;
  /** The `*_ratelimited` call sites, by function name. */
  private readonly ratelimits = new Map<string, Ratelimit>();

  constructor(
    readonly machine: Machine,
    readonly options: KernelOptions,
  ) {
    this.version = mainlineVersion(options.version ?? '6.12');
    this.log.version = this.version;
    this.identity = new Domain({ id: this.newDomainId(), type: 'identity', name: 'identity' });
    this.blocked = new Domain({ id: this.newDomainId(), type: 'blocked', name: 'blocked' });
  }

  /** Kernel-wide object numbers for domains, handed out in order so runs are deterministic. */
  newDomainId(): number {
    return this.nextId++;
  }

  /**
   * A device by PCI address (`SSSS:BB:DD.F`, or `BB:DD.F` in segment 0), RID or label. A bare RID is looked
   * up in `segment` (0 unless given), as Machine.endpoint does.
   */
  device(which: string | number | DeviceInfo, segment = 0): DeviceInfo {
    if (which instanceof DeviceInfo) return which;
    if (typeof which === 'number') {
      const what = segment === 0 ? `with RID 0x${which.toString(16)}` : formatPciAddress(pciFromRid(which, segment));
      return this.deviceAt(segment, which) ?? fail('ENODEV', `no device ${what}`);
    }
    const a = parsePciAddress(which);
    const byAddr = a ? this.deviceAt(a.segment, pciRid(a)) : undefined;
    if (byAddr) return byAddr;
    for (const d of this.devices.values()) if (d.label === which) return d;
    return fail('ENODEV', `no device ${which}`);
  }

  /** The device with requester ID `rid` in PCI segment `segment`, if one is probed. */
  deviceAt(segment: number, rid: number): DeviceInfo | undefined {
    return this.devices.get(pciDeviceKey(segment, rid));
  }

  /**
   * The probed device behind `iommu` with requester ID `rid` (6.12's device_rbtree_find: each IOMMU keeps its
   * own devices by RID). What a unit reports (a fault record, a page request) carries only the RID, which
   * names a function of the unit's own segment, and only one behind the unit itself.
   */
  deviceOn(iommu: IntelIommu, rid: number): DeviceInfo | undefined {
    const dev = this.deviceAt(iommu.unit.segment, rid);
    return dev?.iommu === iommu ? dev : undefined;
  }

  /**
   * Whether a `*_ratelimited` message may be printed now. Each call site has its own state: `site` is the
   * function's name, then `#` and a tag when the function has several.
   */
  ratelimit(site: string): boolean {
    let r = this.ratelimits.get(site);
    if (!r) this.ratelimits.set(site, (r = new Ratelimit(site.split('#')[0]!)));
    return r.allow(this.log);
  }

  /**
   * A WARN_ON that fires: its first line (`cut here`) goes to the log, and the splat the model cannot print
   * byte for byte (WARNING: ... at file:line, registers, call trace) is a finding at that line.
   */
  warnOn(fn: string, unit: string, message: string): void {
    this.log.warn(CUT_HERE);
    this.findings.push({ kind: 'warn', function: fn, unit, logLine: this.log.length, message });
  }

  /** cpu_feature_enabled(X86_FEATURE_LA57), which a process with 5-level page tables implies. */
  la57(p: Process): boolean {
    return (this.options.cpu?.la57 ?? false) || p.pageTable.levels === 5;
  }
}
