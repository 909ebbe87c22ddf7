import { type PciAddress, formatPciAddress, parsePciAddress, pciDeviceKey, pciFromRid, pciRid } from '../pci';
import type { PriRequest } from './types';
import { hex64 } from '../u64';
import { translationWith } from './translation-result';
import { Endpoint, type EndpointCapabilities, type EndpointState } from './endpoint';
import { EventStream } from './events';
import { type MemoryOptions, type PhysicalMemory, SparseMemory, type SnapshotId } from './memory';
import type { DmaRequest, InterruptResult, IommuUnit, IommuUnitFactory, TranslationResult, TranslateOptions } from './types';

/**
 * A platform: physical memory, IOMMU units, and the PCIe endpoints behind them. It is where a device's DMA
 * starts: an ATS-capable endpoint first looks in its device TLB, asks the IOMMU with a translation request
 * on a miss, and may issue a page request (PRI) when the translation fails; other endpoints send
 * untranslated requests. Deterministic, and snapshotable as a whole.
 */

export interface DeviceDma {
  readonly pasid?: number;
  readonly addr: DmaRequest['addr'];
  readonly write?: boolean;
  readonly exec?: boolean;
  readonly priv?: boolean;
}

export interface DmaOutcome {
  readonly device: string;
  /** How the request went: untranslated, served by the device TLB, or an ATS round trip that filled it. */
  readonly path: 'untranslated' | 'device-tlb' | 'ats-fill';
  readonly result: TranslationResult;
  /** When the ATS translation failed and the endpoint asked for the page with PRI. */
  readonly pageRequest?: { readonly prgIndex: number; readonly outcome: 'queued' | 'overflow' | 'rejected' };
}

/**
 * What became of a page request a test injected: the IOMMU's answer (queued in the PRQ, overflow, or rejected
 * as the hardware rejects it), or `not-sent` when the endpoint could not send it, with the reason.
 */
export type PageRequestOutcome =
  | { readonly prgIndex: number; readonly outcome: 'queued' | 'overflow' | 'rejected' }
  | { readonly outcome: 'not-sent'; readonly reason: string };

export interface MachineState {
  readonly memory: SnapshotId;
  readonly events: number;
  readonly units: readonly unknown[];
  readonly endpoints: readonly EndpointState[];
}

/**
 * How a device is named to the machine: `SSSS:BB:DD.F` or `BB:DD.F` (segment 0), an address, an endpoint, or a
 * requester ID. A bare RID names a function in segment 0 unless the segment is given beside it: RIDs repeat
 * in every PCI segment, so the pair is the device's identity.
 */
export type DeviceName = string | number | PciAddress | Endpoint;

export class Machine {
  readonly memory: PhysicalMemory;
  readonly events = new EventStream();
  private readonly unitList: IommuUnit[] = [];
  /** Endpoints by (segment, RID). */
  private readonly endpointMap = new Map<number, Endpoint>();
  private readonly unitOf = new Map<number, IommuUnit>();

  /** `memory`: the address space the machine's units and endpoints see (a VM passes its guest-physical memory). */
  constructor(options: MemoryOptions & { readonly memory?: PhysicalMemory } = {}) {
    this.memory = options.memory ?? new SparseMemory(options);
    // Table writes become events only while someone watches the stream.
    this.events.onActiveChange = (active) => {
      this.memory.observer = active
        ? (addr, bh, bl, hi, lo, what) =>
            this.events.emit({ type: 'table-write', unit: 'memory', address: '0x' + addr.toString(16), before: '0x' + hex64(bh, bl), after: '0x' + hex64(hi, lo), what })
        : undefined;
    };
  }

  get units(): readonly IommuUnit[] {
    return this.unitList;
  }

  /**
   * Adds a unit of any vendor: made by the vendor's factory over this machine's memory and event stream, or
   * one already made (over the same memory and events). It sees the endpoints of its segment.
   */
  addUnit<C, U extends IommuUnit>(factory: IommuUnitFactory<C, U>, config: C): U;
  addUnit<U extends IommuUnit>(unit: U): U;
  addUnit<C, U extends IommuUnit>(what: IommuUnitFactory<C, U> | U, config?: C): U {
    const unit = isFactory(what) ? what.create(this.memory, this.events, config as C) : what;
    if (this.unitList.some((u) => u.name === unit.name)) throw new Error(`an IOMMU named ${unit.name} already exists`);
    unit.connect((sid) => this.endpointMap.get(pciDeviceKey(unit.segment, sid)));
    this.unitList.push(unit);
    return unit;
  }

  unit(name: string): IommuUnit {
    const u = this.unitList.find((x) => x.name === name);
    if (!u) throw new Error(`no IOMMU named ${name}`);
    return u;
  }

  /** Adds an endpoint behind `unit`, which must serve the endpoint's PCI segment. */
  addEndpoint(address: PciAddress | string, caps: EndpointCapabilities, unit: IommuUnit | string): Endpoint {
    const a = typeof address === 'string' ? parsePciAddress(address) : address;
    if (!a) throw new Error(`not a PCI address: ${String(address)}`);
    const u = typeof unit === 'string' ? this.unit(unit) : unit;
    if (u.segment !== a.segment) throw new Error(`${formatPciAddress(a)} is in PCI segment ${a.segment}, but ${u.name} serves segment ${u.segment}`);
    const key = pciDeviceKey(a.segment, pciRid(a));
    if (this.endpointMap.has(key)) throw new Error(`device ${formatPciAddress(a)} already exists`);
    const ep = new Endpoint(a, caps);
    this.endpointMap.set(key, ep);
    this.unitOf.set(key, u);
    return ep;
  }

  /** The endpoint `device` names; a bare RID is looked up in `segment` (0 by default). */
  endpoint(device: DeviceName, segment = 0): Endpoint {
    if (device instanceof Endpoint) return device;
    const key = keyOf(device, segment);
    const ep = this.endpointMap.get(key);
    if (!ep) throw new Error(`no device ${nameOfKey(key)}`);
    return ep;
  }

  get endpoints(): readonly Endpoint[] {
    return [...this.endpointMap.values()];
  }

  /** The unit that translates for `device`; a bare RID is looked up in `segment` (0 by default). */
  unitFor(device: DeviceName, segment = 0): IommuUnit {
    const key = device instanceof Endpoint ? pciDeviceKey(device.address.segment, device.sid) : keyOf(device, segment);
    const u = this.unitOf.get(key);
    if (!u) throw new Error(`no IOMMU serves ${nameOfKey(key)}`);
    return u;
  }

  /** A DMA from `device`, with ATS and PRI as the endpoint has them enabled. */
  dma(device: DeviceName, req: DeviceDma, options?: TranslateOptions): DmaOutcome {
    const ep = this.endpoint(device);
    const unit = this.unitFor(ep);
    const base: DmaRequest = { sid: ep.sid, addr: req.addr, write: req.write ?? false, exec: req.exec ?? false, priv: req.priv ?? false, ...(req.pasid !== undefined ? { pasid: req.pasid } : {}) };
    if (!ep.atsEnabled) return { device: ep.name, path: 'untranslated', result: unit.translate(base, options) };

    const addrNum = typeof req.addr === 'number' ? req.addr : req.addr.toNumber();
    const pasid = req.pasid ?? -1;
    const hit = ep.lookup(pasid, addrNum);
    // Execute Requested is a PASID-prefix bit of reads: other requests cannot ask for it (the IOMMU walks them so).
    const exec = req.exec === true && req.pasid !== undefined && req.write !== true;
    if (hit && (!req.write || hit.write) && (!exec || hit.exec) && (req.write || hit.read)) {
      const translated = hit.output + (addrNum - hit.base);
      const result = unit.translate({ ...base, addr: translated, kind: 'translated' }, options);
      const stale = this.staleDeviceTlb(ep, hit, base, unit);
      return { device: ep.name, path: 'device-tlb', result: result.ok ? translationWith(result, { source: 'device-tlb', ...(stale ? { stale } : {}) }) : result };
    }
    const tr = unit.translate({ ...base, kind: 'translation-request' }, options);
    if (!tr.ok) {
      const prgIndex = ep.pageRequestRefusal(req.pasid) === undefined ? ep.allocatePrgIndex(pasid) : -1;
      if (prgIndex >= 0) {
        const page = Math.floor(addrNum / 4096) * 4096;
        ep.addRequest(pasid, prgIndex, page);
        const outcome = unit.receivePageRequest({
          rid: ep.sid,
          ...(req.pasid !== undefined ? { pasid: req.pasid } : {}),
          address: page,
          read: !(req.write ?? false),
          write: req.write ?? false,
          exec,
          priv: req.priv ?? false,
          lastInGroup: true,
          prgIndex,
        });
        return { device: ep.name, path: 'ats-fill', result: tr, pageRequest: { prgIndex, outcome } };
      }
      return { device: ep.name, path: 'ats-fill', result: tr };
    }
    const output = tr.address;
    const offsetInPage = addrNum % tr.pageSize;
    ep.fill({
      pasid,
      base: addrNum - offsetInPage,
      size: tr.pageSize,
      output: output - offsetInPage,
      read: tr.perms.read,
      write: tr.perms.write,
      exec: tr.perms.exec,
      priv: req.priv ?? false,
      verifiedAt: this.memory.writeCount,
    });
    const result = unit.translate({ ...base, addr: output, kind: 'translated' }, options);
    return { device: ep.name, path: 'ats-fill', result: result.ok ? translationWith(result, { source: 'walk', address: tr.address }) : result };
  }

  /**
   * Whether a device-TLB entry still matches what the tables say. Compared only when memory changed since
   * the entry was last confirmed, with a side-effect-free probe of the IOMMU.
   */
  private staleDeviceTlb(ep: Endpoint, hit: ReturnType<Endpoint['lookup']> & object, base: DmaRequest, unit: IommuUnit) {
    if (hit.verifiedAt === this.memory.writeCount) return undefined;
    const now = unit.probe({ ...base, addr: hit.base, kind: 'untranslated' });
    const nowOut = now.ok ? now.address : -1;
    if (now.ok && nowOut === hit.output && now.perms.write === hit.write) {
      hit.verifiedAt = this.memory.writeCount;
      return undefined;
    }
    const what = now.ok ? `now translates to 0x${nowOut.toString(16)}` : `now faults (reason 0x${now.reason.toString(16)})`;
    return {
      cache: 'device-tlb' as const,
      entryAddress: '0x' + hit.base.toString(16),
      cached: ['0x' + hit.output.toString(16)],
      memory: [now.ok ? now.output : `fault 0x${now.reason.toString(16)}`],
      message: `${ep.name}'s device TLB translated 0x${hit.base.toString(16)} to 0x${hit.output.toString(16)}, but the IOMMU ${what}: a device-TLB invalidation is missing`,
    };
  }

  /**
   * An interrupt from `device`: its DWORD write of `data` to the MSI address `address` (0xfeeXXXXX), which the
   * IOMMU's interrupt-remapping hardware handles instead of translating.
   */
  interrupt(device: DeviceName, msg: { readonly address: number; readonly data: number }, options?: TranslateOptions): InterruptResult {
    const ep = this.endpoint(device);
    const unit = this.unitFor(ep);
    if (!unit.interrupt) throw new Error(`${unit.name} does not remap interrupts`);
    return unit.interrupt({ sid: ep.sid, address: msg.address, data: msg.data }, options);
  }

  /**
   * A page request sent by `device` directly (PRI), outside a DMA. A device whose PRI is off (or stopped by a
   * Response Failure), or that would need a PASID prefix it may not send, sends nothing: `not-sent`.
   */
  pageRequest(device: DeviceName, r: Omit<PriRequest, 'rid' | 'prgIndex'> & { prgIndex?: number }): PageRequestOutcome {
    const ep = this.endpoint(device);
    const refusal = ep.pageRequestRefusal(r.pasid);
    if (refusal !== undefined) return { outcome: 'not-sent', reason: refusal };
    const pasid = r.pasid ?? -1;
    const prgIndex = r.prgIndex ?? ep.allocatePrgIndex(pasid);
    if (prgIndex < 0) return { outcome: 'not-sent', reason: `${ep.name} has all 512 page request group indices outstanding${r.pasid !== undefined ? ` for PASID ${r.pasid}` : ''}: it waits for a response` };
    ep.addRequest(pasid, prgIndex, r.address);
    const outcome = this.unitFor(ep).receivePageRequest({ ...r, rid: ep.sid, prgIndex });
    return { prgIndex, outcome };
  }

  // ---- snapshots ----

  snapshot(): MachineState {
    return {
      memory: this.memory.snapshot(),
      events: this.events.sequence,
      units: this.unitList.map((u) => u.capture()),
      endpoints: this.endpoints.map((e) => e.capture()),
    };
  }

  restore(s: MachineState): void {
    this.memory.restore(s.memory);
    this.events.sequence = s.events;
    this.unitList.forEach((u, i) => u.restore(s.units[i]!));
    this.endpoints.forEach((e, i) => e.restore(s.endpoints[i]!));
  }

  release(s: MachineState): void {
    this.memory.release(s.memory);
  }
}

function isFactory<C, U extends IommuUnit>(x: IommuUnitFactory<C, U> | U): x is IommuUnitFactory<C, U> {
  return typeof (x as Partial<IommuUnitFactory<C, U>>).create === 'function';
}

function keyOf(device: string | number | PciAddress, segment: number): number {
  if (typeof device === 'number') return pciDeviceKey(segment, device);
  const a = typeof device === 'string' ? parsePciAddress(device) : device;
  if (!a) throw new Error(`not a PCI address: ${String(device)}`);
  return pciDeviceKey(a.segment, pciRid(a));
}

function nameOfKey(key: number): string {
  return formatPciAddress(pciFromRid(key % 0x1_0000, Math.floor(key / 0x1_0000)));
}
