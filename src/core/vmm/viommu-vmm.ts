import type { Domain, PageFault, PageResponseCode } from '../driver/domain';
import type { TranslationFault } from '../hw/types';
import type { VmmFinding } from './findings';
import { formatPciAddress, pciRid } from '../pci';
import { DescType } from '../vtd/descriptors';
import type { VtdDescriptorEvent, VtdRegisterWrite } from '../vtd/traps';
import { guestTranslation, type GuestTranslation, presentGuestPasids } from './guest-tables';
import { qemu72FaultPasid, qemuFaultRecord } from './qemu-faults';
import type { QemuTraceEvent } from './qemu-trace';
import { qemuDescriptorEvents } from './vmm-qemu-events';
import { ShadowSpace } from './shadow';
import { VirtualCommand } from './vcmd';
import { VCMD_LAYOUT_VTD_3_1, VCMD_LAYOUT_VTD_3_3 } from '../vtd/vcmd-registers';
import type { PageRequestToken } from './host-iommu';
import type { Vm, VmDevice } from './vm';

/**
 * The VMM behind a vIOMMU with caching mode (QEMU's intel_iommu.c with VFIO): it traps the guest's register
 * writes and invalidation descriptors on the vIOMMU, and keeps the host in step.
 * - Address spaces (vtd_switch_address_space): a device whose guest translation is off or pass-through DMAs to
 *   GPA (the VM's GPA domain); second-level translation is shadowed into a host domain (shadow.ts); a
 *   first-level table is bound nested over the GPA domain, the host walking the guest's table.
 * - PASID-cache invalidations re-read guest PASID entries and bind or unbind nested PASIDs on the host.
 * - First-level (PASID-based) IOTLB invalidations are forwarded to the host, as a raw descriptor with the
 *   DID and PASID replaced (seed 002, choice a) or as a generic record the host re-assembles (choice b).
 * - Page requests from the host are injected into the guest's page request queue with the guest PASID, and
 *   the guest's page group responses go back to the host with the host PASID.
 */

export interface VmmOptions {
  /** How a guest first-level invalidation reaches the host (seed 002): `raw` (a) or `generic` (b). */
  readonly invalidationPropagation?: 'raw' | 'generic';
  /**
   * Keep feeding an mdev's device model guest-RAM (GPA) mappings after the vIOMMU starts translating for
   * it: the situation seed 004 asks about, reported as a finding. Default false (QEMU skips RAM sections
   * for an address space the vIOMMU translates).
   */
  readonly mdevKeepsGpaView?: boolean;
}

interface NestedBind {
  readonly device: VmDevice;
  readonly guestPasid: number;
  readonly hostPasid: number;
  readonly domain: Domain;
  readonly root: number;
  /** Under a local/global split, the extra host entry at the guest's local PASID (devices without ENQCMD). */
  readonly local?: { readonly pasid: number; readonly domain: Domain };
}

export class Vmm {
  readonly propagation: 'raw' | 'generic';
  private readonly shadows = new Map<VmDevice, ShadowSpace>();
  private readonly binds = new Map<string, NestedBind>();
  /** Page requests the VMM injected into the guest, by (guest RID, guest PASID, PRG index): where they came from. */
  private readonly pending = new Map<string, { device: VmDevice; hostPasid: number | undefined; token: PageRequestToken }>();
  private detach: (() => void) | undefined;
  private translating = false;
  /** The virtual command handler, when the vIOMMU offers ECAP.VCS. */
  private vcmd: VirtualCommand | undefined;

  constructor(
    readonly vm: Vm,
    options: VmmOptions = {},
  ) {
    this.propagation = options.invalidationPropagation ?? 'raw';
    const viommu = vm.viommu;
    if (!viommu) throw new Error(`${vm.name} has no vIOMMU to trap`);
    this.makeVcmd();
    this.detach = viommu.trap({
      registerWrite: (w) => {
        const outcome = this.vcmd?.trap({ registerWrite: w });
        if (outcome === undefined) return 'pass';
        if (outcome !== 'pending') {
          const pasid = outcome.guestPasid !== undefined ? { guest: outcome.guestPasid, ...(outcome.hostPasid !== undefined ? { host: outcome.hostPasid } : {}) } : undefined;
          this.step('vmm', 'virtual-command', `${outcome.command === 'alloc' ? 'ALLOC_PASID' : outcome.command === 'free' ? 'FREE_PASID' : 'unknown command'}: status ${outcome.status}${outcome.guestPasid !== undefined ? `, guest PASID ${outcome.guestPasid}` : ''}${outcome.hostPasid !== undefined ? ` (host PASID ${outcome.hostPasid} allocated behind it)` : ''}${outcome.error ? `: ${outcome.error}` : ''}`, pasid ? { pasid } : {});
        }
        return 'handled';
      },
      registerWritten: (w) => this.registerWritten(w),
      descriptorDone: (d) => this.descriptorDone(d),
    });
  }

  /** The VMM's side of the virtual command registers, over the VM's current PASID table. */
  private makeVcmd(): void {
    const u = this.vm.viommu!;
    if (u.ecap.vcs !== 1) return;
    const layout = this.vm.config.viommu?.virtualCommand === 'vt-d-3.1' ? VCMD_LAYOUT_VTD_3_1 : VCMD_LAYOUT_VTD_3_3;
    this.vcmd = new VirtualCommand({ map: this.vm.pasids, registers: u, layout });
  }

  /**
   * Everything the VMM made on the host for this VM, undone: nested binds, shadows, nested RID domains, the
   * devices' attachments and the GPA domain. Page requests still injected and unanswered are answered
   * invalid on the host first (a drain: nothing may be left in flight on a host the VM leaves).
   */
  teardown(o: { readonly keepGuestPasids?: boolean } = {}): void {
    const h = this.vm.hostIommu;
    for (const p of this.pending.values()) h.pageResponse(p.token, 'invalid');
    if (this.pending.size) this.step('vmm', 'drain', `${this.pending.size} page request group${this.pending.size === 1 ? '' : 's'} in flight answered invalid on ${this.vm.host.name}`);
    this.pending.clear();
    for (const b of [...this.binds.values()]) this.unbind(b, o.keepGuestPasids === true);
    for (const dev of this.vm.devices) {
      this.dropShadow(dev);
      if (dev.space.kind === 'nested') h.unbindNested(dev.host, this.streamPasid(dev), dev.space.domain);
      h.detach(dev.host, this.streamPasid(dev));
      dev.space = { kind: 'gpa' };
    }
    this.vm.releaseGpaDomain();
  }

  /**
   * Rebuilds the host side from the guest's tables alone, as QEMU does on the destination of a migration:
   * devices attached to the new GPA domain, then every address space and every present guest PASID
   * re-read, with host PASIDs from the new host.
   */
  rebuild(): void {
    // The handler answers from the destination's PASID table from now on.
    this.makeVcmd();
    const gpa = this.vm.gpaDomain;
    for (const dev of this.vm.devices) this.attachStream(dev, gpa);
    this.translating = this.vm.viommu!.translationEnabled;
    for (const dev of this.vm.devices) {
      this.switchAddressSpace(dev);
      this.pasidCacheSync(dev, undefined, undefined);
    }
  }

  /**
   * QEMU traces each fault its vIOMMU reports (vtd_dmar_fault) and the record it writes (vtd_frr_new): for
   * DMA the VMM emulates (vm.emulatedDma) it is told each result, rather than watching the vIOMMU's event
   * stream, which would make every guest table write an event.
   */
  traceFault(sid: number, addr: number, write: boolean, pasid: number | null, r: TranslationFault): void {
    this.qemu({ event: 'vtd_dmar_fault', sid, fault: r.reason, addr, is_write: write });
    if (r.frcdIndex !== undefined) {
      const rec = qemuFaultRecord({ sid, addr, fault: r.reason, isWrite: write, ...qemu72FaultPasid('walk', this.vm.viommu!.scalableMode, pasid) });
      this.qemu({ event: 'vtd_frr_new', index: r.frcdIndex, ...rec });
    }
  }

  /** What the VMM holds on the host (for the "nothing left" invariant). */
  get hostState(): { binds: number; shadows: number; pending: number } {
    return { binds: this.binds.size, shadows: this.shadows.size, pending: this.pending.size };
  }

  stop(): void {
    this.detach?.();
    this.detach = undefined;

  }

  private step(side: 'vmm' | 'host-driver' | 'guest', action: string, detail: string, extra: Partial<Parameters<Vm['log']['add']>[0]> = {}): void {
    this.vm.log.add({ vm: this.vm.name, side, action, detail, ...extra });
  }

  // ---- traps ----

  private registerWritten(w: VtdRegisterWrite): void {
    const u = this.vm.viommu!;
    // Register-based invalidation (a guest without queued invalidation): the same work as the descriptors,
    // once the unit performed it (it cleared ICC / IVT and reported the granularity it did).
    if (w.name === 'CCMD' && w.value.hi >>> 31 === 1) {
      const caig = u.readRegister(0x28).field(60, 59);
      if (caig === 0) return;
      const sid = w.value.field(31, 16);
      this.step('vmm', 'trap-register', `context-command register (${['', 'global', 'domain', 'device'][caig]} invalidation)`);
      for (const dev of this.devicesFor(caig === 3 ? sid : undefined)) this.switchAddressSpace(dev);
      return;
    }
    if (w.offset === u.iotlbRegisters.iotlb && w.value.hi >>> 31 === 1) {
      const iaig = u.readRegister(u.iotlbRegisters.iotlb).field(58, 57);
      if (iaig === 0) return;
      const did = w.value.field(47, 32);
      const iva = u.readRegister(u.iotlbRegisters.iva);
      const start = iva.field(63, 12) * 4096;
      const range = iaig === 3 ? { start, end: start + 4096 * 2 ** iva.field(5, 0) } : { start: 0, end: 2 ** 57 };
      this.step('vmm', 'trap-register', `IOTLB invalidation register (${['', 'global', 'domain', 'page'][iaig]}${iaig !== 1 ? ` DID ${did}` : ''}): replay`);
      for (const dev of this.vm.devices) if (dev.space.kind === 'shadow' && (iaig === 1 || dev.space.guestDid === did)) this.replay(dev, range.start, range.end);
      return;
    }
    if (w.name !== 'GCMD') return;
    const on = u.translationEnabled;
    if (on !== this.translating) {
      this.translating = on;
      this.step('vmm', 'trap-register', `guest ${on ? 'enabled' : 'disabled'} DMA remapping (GCMD.TE): every device switches address space`);
      for (const d of this.vm.devices) this.switchAddressSpace(d);
    }
  }

  /** The vtd_* trace events QEMU prints for what the VMM does, in order (qemu-trace.ts renders them). */
  readonly qemuTrace: QemuTraceEvent[] = [];

  /** Trace events dropped from the front (the trace keeps the last 100,000, as the step log does). */
  qemuTraceDropped = 0;

  private qemu(e: QemuTraceEvent): void {
    this.qemuTrace.push(e);
    if (this.qemuTrace.length >= 200_000) {
      this.qemuTrace.splice(0, 100_000);
      this.qemuTraceDropped += 100_000;
    }
  }

  private descriptorDone(d: VtdDescriptorEvent): void {
    const f = d.fields;
    for (const e of qemuDescriptorEvents(d, this.devicesFor(d.type === DescType.CONTEXT_CACHE && f.G === 3 ? f.SID : undefined), this.vm.config.viommu?.behaviour !== 'qemu-7.2')) this.qemu(e);
    switch (d.type) {
      case DescType.CONTEXT_CACHE:
        this.step('vmm', 'trap-descriptor', `${d.typeName} (${['', 'global', 'domain', 'device'][f.G!] ?? f.G})`);
        for (const dev of this.devicesFor(f.G === 3 ? f.SID : undefined)) this.switchAddressSpace(dev);
        return;
      case DescType.IOTLB: {
        const range = f.G === 3 ? { start: f.ADDR! * 4096, end: f.ADDR! * 4096 + 4096 * 2 ** f.AM! } : { start: 0, end: 2 ** 57 };
        this.step('vmm', 'trap-descriptor', `${d.typeName} (${['', 'global', 'domain', 'page'][f.G!]}${f.G !== 1 ? ` DID ${f.DID}` : ''}${f.G === 3 ? ` 0x${range.start.toString(16)}+0x${(range.end - range.start).toString(16)}` : ''}): replay`);
        for (const dev of this.vm.devices) {
          const space = dev.space;
          if (space.kind !== 'shadow' || (f.G !== 1 && space.guestDid !== f.DID)) continue;
          this.replay(dev, range.start, range.end);
        }
        return;
      }
      case DescType.PASID_CACHE: {
        this.step('vmm', 'trap-descriptor', `${d.typeName} (${({ 0: 'domain', 1: 'pasid', 3: 'global' } as Record<number, string>)[f.G!]}${f.G === 1 ? ` PASID ${f.PASID}` : ''})`, f.G === 1 ? { pasid: { guest: f.PASID! } } : {});
        for (const dev of this.vm.devices) this.pasidCacheSync(dev, f.G === 1 ? f.PASID : undefined, f.G === 0 ? f.DID : undefined);
        return;
      }
      case DescType.PASID_IOTLB:
        this.forwardPiotlb(d);
        return;
      case DescType.DEVICE_TLB:
      case DescType.PASID_DEVICE_TLB:
        this.forwardDevTlb(d);
        return;
      case DescType.PAGE_GROUP_RESPONSE:
        this.forwardResponse(f.RID!, f.PP ? f.PASID! : undefined, f.PRGI!, f.RC!);
        return;
      default:
        return;
    }
  }

  private devicesFor(guestRid: number | undefined): VmDevice[] {
    return this.vm.devices.filter((d) => guestRid === undefined || pciRid(d.address) === guestRid);
  }

  /**
   * Puts the device's requests without PASID on `domain` on the host: the RID of an assigned function, or
   * the (parent RID, PASID) that marks a mediated device.
   */
  private attachStream(dev: VmDevice, domain: Domain): void {
    this.vm.hostIommu.attach(dev.host, this.streamPasid(dev), domain);
  }

  /** The host PASID of a device's stream: none for an assigned function, the mark of an mdev. */
  private streamPasid(dev: VmDevice): number | undefined {
    return dev.kind === 'mdev' ? dev.hostPasid : undefined;
  }

  private streamDomain(dev: VmDevice): Domain | undefined {
    return dev.kind === 'vfio-pci' ? dev.host.ridDomain : dev.host.pasidDomains.get(dev.hostPasid!);
  }

  private guest(dev: VmDevice, pasid?: number): GuestTranslation {
    const u = this.vm.viommu!;
    return guestTranslation({ memory: this.vm.memory, rootTable: u.rootTableAddress, scalable: u.scalableMode, translationEnabled: u.translationEnabled }, pciRid(dev.address), pasid);
  }

  // ---- address spaces of requests without PASID ----

  /** vtd_switch_address_space + replay: what the host does for the device's requests without PASID. */
  private switchAddressSpace(dev: VmDevice): void {
    const g = this.guest(dev);
    const h = this.vm.hostIommu;
    const name = formatPciAddress(dev.address);
    const gpa = this.vm.gpaDomain;
    if (g.kind === 'pass-through' || g.kind === 'absent') {
      // QEMU: translation off or pass-through uses system memory (GPA); a missing entry leaves the vIOMMU
      // address space, whose translations fault in the guest's vIOMMU; on the host the device stays on GPA.
      if (dev.space.kind === 'gpa' && this.streamDomain(dev) === gpa) return;
      this.qemu({ event: 'vtd_switch_address_space', bus: dev.address.bus, slot: dev.address.device, fn: dev.address.fn, on: false });
      this.dropShadow(dev);
      this.attachStream(dev, gpa);
      dev.space = { kind: 'gpa' };
      this.step('vmm', 'switch-address-space', `${name}: ${g.kind === 'absent' ? g.why + '; ' : ''}DMA to guest-physical addresses (${gpa.name})`);
      return;
    }
    if (g.kind === 'second-level') {
      if (dev.space.kind === 'shadow' && dev.space.guestDid === g.did) {
        this.shadows.get(dev)!.table = { root: g.root, levels: g.levels, did: g.did };
        this.replay(dev, 0, 2 ** 57);
        return;
      }
      this.dropShadow(dev);
      this.qemu({ event: 'vtd_switch_address_space', bus: dev.address.bus, slot: dev.address.device, fn: dev.address.fn, on: true });
      const domain = h.allocShadow(dev.host, `${this.vm.name}-${name}-shadow`, `${this.vm.name} ${name} guest IOVA (shadow of guest DID ${g.did})`);
      this.attachStream(dev, domain);
      dev.space = { kind: 'shadow', guestDid: g.did, domain };
      this.vm.deviceModelSwitched(dev);
      const shadow = new ShadowSpace(domain, h, this.vm.memory);
      shadow.table = { root: g.root, levels: g.levels, did: g.did };
      this.shadows.set(dev, shadow);
      this.step('vmm', 'switch-address-space', `${name}: guest second-level table at GPA 0x${g.root.toString(16)} (guest DID ${g.did}) shadowed in ${domain.name}`, { path: 'shadow' });
      this.replay(dev, 0, 2 ** 57);
      return;
    }
    if (g.kind === 'first-level') {
      if (dev.space.kind === 'nested') return;
      this.dropShadow(dev);
      const domain = h.bindNested(dev.host, this.streamPasid(dev), { sre: g.sre, wpe: g.wpe, eafe: g.eafe, addrWidth: g.levels === 5 ? 57 : 48, pgtblAddr: g.root }, { guestRid: pciRid(dev.address) });
      dev.space = { kind: 'nested', domain };
      this.step('host-driver', 'bind-pgtable', `${name}: guest first-level table at GPA 0x${g.root.toString(16)} nested over ${gpa.name} (${domain.name})`, { path: h.path });
    }
  }

  private replay(dev: VmDevice, start: number, end: number): void {
    const shadow = this.shadows.get(dev);
    if (!shadow) return;
    const r = shadow.replay(start, end);
    for (const c of r.changes) this.qemu({ event: 'vtd_page_walk_one', domain: shadow.table.did, iova: c.iova, gpa: c.gpa, mask: c.size - 1, perm: c.perm });
    this.step('vmm', 'replay', `${formatPciAddress(dev.address)}: ${r.mapped} mapped, ${r.unmapped} unmapped${r.outsideRam ? `, ${r.outsideRam} outside guest RAM (skipped)` : ''}`, { path: 'shadow' });
  }

  private dropShadow(dev: VmDevice): void {
    const s = this.shadows.get(dev);
    if (!s) return;
    this.shadows.delete(dev);
    s.clear();
    this.attachStream(dev, this.vm.gpaDomain);
    this.vm.hostIommu.freeShadow(s.domain);
  }

  /** The shadow of a device (tests and views). */
  shadowOf(address: string): ShadowSpace | undefined {
    return this.shadows.get(this.vm.device(address));
  }

  // ---- PASIDs ----

  /**
   * The VMM's G-to-H for a device starting to use a guest PASID: its table entry (a new host PASID for the
   * first user under non-identity), the device counted as a user; then the keyed lookup, traced.
   */
  private useGuestPasid(dev: VmDevice, guestPasid: number, why: string): number {
    const pasids = this.vm.pasids;
    const user = dev.host.name;
    if (!pasids.hasUser(guestPasid, user)) pasids.map(guestPasid, { name: user, maxPasids: dev.host.maxPasids });
    const h = pasids.vmmGuestToHost(guestPasid, why)!;
    this.lookups();
    return h;
  }

  /** What the VMM noticed (the virtual command handler's protocol findings). */
  get findings(): VmmFinding[] {
    return this.vcmd ? [...this.vcmd.findings] : [];
  }

  /** Copies the PASID lookups made elsewhere (the device model, the CPU) into the step log. */
  flushLookups(): void {
    this.lookups();
  }

  /** Copies the PASID lookups made since the last call into the VM's step log. */
  private lookups(): void {
    for (const l of this.vm.pasidTrace.take()) {
      this.vm.log.add({
        vm: this.vm.name,
        side: l.side,
        action: 'pasid-lookup',
        detail: `${l.side} ${l.direction} ${l.kind === 'fast' ? 'lookup' : 'search'}${l.why ? ` (${l.why})` : ''}: ${l.direction === 'G-to-H' ? 'guest' : 'host'} PASID ${l.from} is ${l.direction === 'G-to-H' ? 'host' : 'guest'} PASID ${l.to ?? 'unknown'}${l.requester ? `, asked by the ${l.requester}` : ''}`,
        lookup: l,
        ...(l.to !== undefined ? { pasid: l.direction === 'G-to-H' ? { guest: l.from, host: l.to } : { guest: l.to, host: l.from } } : {}),
      });
    }
  }

  /** vtd_pasid_cache_sync for one device: re-read the guest PASID entries the invalidation names. */
  private pasidCacheSync(dev: VmDevice, pasid: number | undefined, did: number | undefined): void {
    if (!this.vm.viommu!.scalableMode) return;
    const candidates = pasid !== undefined ? [pasid] : [...new Set([...this.bindsOf(dev).map((b) => b.guestPasid), ...this.presentGuestPasids(dev)])];
    for (const p of candidates) {
      if (p === 0) {
        this.switchAddressSpace(dev);
        continue;
      }
      const g = this.guest(dev, p);
      if (did !== undefined && g.kind !== 'absent' && 'did' in g && g.did !== did) continue;
      const key = `${pciRid(dev.address)}:${p}`;
      const bound = this.binds.get(key);
      if (g.kind === 'first-level') {
        if (bound && bound.root === g.root) continue;
        if (bound) this.unbind(bound);
        this.bind(dev, p, g);
      } else if (bound) {
        this.unbind(bound);
      }
    }
  }

  private bindsOf(dev: VmDevice): NestedBind[] {
    return [...this.binds.values()].filter((b) => b.device === dev);
  }

  /** The guest PASIDs with a present PASID entry (QEMU walks the guest PASID directory the same way). */
  private presentGuestPasids(dev: VmDevice): number[] {
    const u = this.vm.viommu!;
    return presentGuestPasids({ memory: this.vm.memory, rootTable: u.rootTableAddress, scalable: u.scalableMode, translationEnabled: u.translationEnabled }, pciRid(dev.address)).filter((p) => p !== 0);
  }

  private bind(dev: VmDevice, guestPasid: number, g: Extract<GuestTranslation, { kind: 'first-level' }>): void {
    const h = this.vm.hostIommu;
    // Seed 002's hardware limitation: without the capability, one device cannot have guest IOVA (a shadowed
    // second level at its RID) and guest SVM (nested PASIDs) at once.
    if (this.vm.config.viommu?.iovaWithSvm === false && dev.space.kind === 'shadow') {
      this.vm.note({ code: 'iova-and-svm', vm: this.vm.name, guestPasid, message: `${formatPciAddress(dev.address)} uses guest IOVA (shadowed second level), so guest PASID ${guestPasid} cannot be bound for SVM: the hardware cannot use gIOVA and vSVM on one device at once (seed 002); the host keeps the PASID unbound and its DMA faults` });
      this.step('vmm', 'refuse-bind', `${formatPciAddress(dev.address)} guest PASID ${guestPasid}: gIOVA and vSVM at once are not supported by this hardware`, { pasid: { guest: guestPasid } });
      return;
    }
    const hostPasid = this.useGuestPasid(dev, guestPasid, 'PASID-cache flush');
    const s1 = { sre: g.sre, wpe: g.wpe, eafe: g.eafe, addrWidth: g.levels === 5 ? 57 : 48, pgtblAddr: g.root };
    const o = { guestRid: pciRid(dev.address), guestPasid, onPageRequest: (group: readonly PageFault[], token: PageRequestToken) => this.hostPageRequest(dev, guestPasid, group, token) };
    // bind_gpasid: the host driver keeps the guest PASID with the bind (its H-to-G), checking that G-to-H leads here first.
    this.vm.pasids.bind(hostPasid, guestPasid, dev.host.name);
    const domain = h.bindNested(dev.host, hostPasid, s1, o);
    this.step('host-driver', h.path === 'bind' ? 'bind-gpasid' : 'iommufd-nested-hwpt', `${dev.host.name} PASID ${hostPasid}: guest first-level table at GPA 0x${g.root.toString(16)} nested over ${this.vm.gpaDomain.name}${h.path === 'bind' ? `; guest PASID ${guestPasid} kept as the bind's private data (H-to-G)` : ' (IOMMU_HWPT_ALLOC with IOMMU_HWPT_DATA_VTD_S1)'}`, { pasid: { guest: guestPasid, host: hostPasid }, path: h.path });
    // Seed 003: a device without ENQCMD gets its local entry too (the guest programs it with its own PASID).
    let local: NestedBind['local'];
    const split = this.vm.pasids.split;
    if (split && dev.kind === 'vfio-pci' && hostPasid !== guestPasid) {
      const slots = split.entriesToProgram({ name: dev.host.name, maxPasids: dev.host.maxPasids, enqcmd: dev.enqcmd === true }, guestPasid, hostPasid);
      const l = slots.find((x) => x.range === 'local');
      if (l) {
        const ld = h.bindNested(dev.host, l.index, s1, o);
        local = { pasid: l.index, domain: ld };
        this.step('host-driver', h.path === 'bind' ? 'bind-gpasid' : 'iommufd-nested-hwpt', `${dev.host.name} PASID ${l.index} (local): the same guest table, for the guest programming the device with its own PASID (no ENQCMD)`, { pasid: { guest: guestPasid, host: l.index }, path: h.path });
      }
    }
    this.binds.set(`${pciRid(dev.address)}:${guestPasid}`, { device: dev, guestPasid, hostPasid, domain, root: g.root, ...(local ? { local } : {}) });
    if (dev.kind === 'vfio-pci' && !dev.enqcmd && !local && hostPasid !== guestPasid) {
      this.vm.note({ code: 'guest-pasid-not-on-host', vm: this.vm.name, guestPasid, hostPasid, message: `${formatPciAddress(dev.address)} is programmed by the guest with PASID ${guestPasid}, but the host bound its table at host PASID ${hostPasid} and has no entry at ${guestPasid}: DMA with the guest's PASID faults (use a local/global split, or ENQCMD)` });
    }
    // ENQCMD from the guest carries the guest PASID: the VMM maps it into KVM's CPU PASID translation table.
    if (dev.enqcmd && !this.vm.cpuPasids.maps(guestPasid)) {
      this.vm.cpuPasids.map(guestPasid, hostPasid);
      this.step('vmm', 'cpu-pasid-map', `KVM: guest PASID ${guestPasid} translates to host PASID ${hostPasid} on ENQCMD`, { pasid: { guest: guestPasid, host: hostPasid } });
    }
  }

  private unbind(b: NestedBind, keepGuestPasid = false): void {
    const h = this.vm.hostIommu;
    h.unbindNested(b.device.host, b.hostPasid, b.domain);
    if (b.local) h.unbindNested(b.device.host, b.local.pasid, b.local.domain);
    this.binds.delete(`${pciRid(b.device.address)}:${b.guestPasid}`);
    // KVM's entry goes before the host PASID can go back to the allocator.
    const stillEnqcmd = [...this.binds.values()].some((x) => x.guestPasid === b.guestPasid && x.device.enqcmd);
    if (b.device.enqcmd && !stillEnqcmd && this.vm.cpuPasids.maps(b.guestPasid)) {
      this.vm.cpuPasids.unmap(b.guestPasid);
      this.step('vmm', 'cpu-pasid-unmap', `KVM: guest PASID ${b.guestPasid} no longer translates`, { pasid: { guest: b.guestPasid } });
    }
    this.vm.pasids.unbind(b.hostPasid, b.device.host.name);
    if (!keepGuestPasid) this.vm.pasids.unmap(b.guestPasid, b.device.host.name);
    this.step('host-driver', 'unbind-gpasid', `${b.device.host.name} PASID ${b.hostPasid} (guest PASID ${b.guestPasid}) unbound`, { pasid: { guest: b.guestPasid, host: b.hostPasid }, path: h.path });
  }

  /** What the host binds for a guest PASID of a device (tests and views). */
  bindOf(address: string, guestPasid: number): { hostPasid: number; domain: Domain } | undefined {
    const b = this.binds.get(`${pciRid(this.vm.device(address).address)}:${guestPasid}`);
    return b && { hostPasid: b.hostPasid, domain: b.domain };
  }

  // ---- first-level invalidation, forwarded ----

  private forwardPiotlb(d: VtdDescriptorEvent): void {
    const f = d.fields;
    const gpasid = f.PASID!;
    const targets = [...this.binds.values()].filter((b) => b.guestPasid === gpasid);
    const h = this.vm.hostIommu;
    const path = h.path === 'iommufd' ? 'iommufd (IOMMU_HWPT_INVALIDATE)' : this.propagation === 'raw' ? 'raw (seed 002 choice a)' : 'generic (seed 002 choice b)';
    this.step('vmm', 'trap-descriptor', `${d.typeName} (${f.G === 3 ? 'page' : 'pasid'} PASID ${gpasid}): forwarded to ${targets.length} host bind${targets.length === 1 ? '' : 's'}`, { pasid: { guest: gpasid }, path });
    const range = f.G === 3 ? { addr: f.ADDR! * 4096, am: f.AM!, leaf: f.IH === 1 } : undefined;
    for (const b of targets) {
      const streams: [number, Domain][] = [[b.hostPasid, b.domain]];
      if (b.local) streams.push([b.local.pasid, b.local.domain]);
      for (const [pasid, domain] of streams) {
        h.invalidateNested(domain, pasid, range, f);
        this.step('host-driver', 'invalidate', `first-level invalidation of ${domain.name} (DID ${h.didOf(domain, b.device.host)}) PASID ${pasid}${range ? ` 0x${range.addr.toString(16)} AM ${range.am}` : ''}`, { pasid: { guest: gpasid, host: pasid }, path });
      }
    }
  }

  /**
   * A guest device-TLB invalidation reaches the physical device only through the host: the VMM sends it with
   * the host's source ID (and PFSID) and, with a PASID, the host PASID. Without it the device keeps using
   * translations the guest has taken away (the model reports that as stale device-TLB use).
   */
  private forwardDevTlb(d: VtdDescriptorEvent): void {
    const f = d.fields;
    const dev = this.devicesFor(f.SID).find((x) => x.host.atsEnabled);
    const withPasid = d.type === DescType.PASID_DEVICE_TLB;
    const gpasid = withPasid ? f.PASID! : undefined;
    if (!dev) {
      this.step('vmm', 'trap-descriptor', `${d.typeName} for guest SID 0x${f.SID!.toString(16)}: no assigned device with ATS there, nothing to forward`);
      return;
    }
    if (gpasid === undefined && dev.space.kind === 'shadow') {
      // A shadowed device's TLB holds host translations of the shadow: the host driver's own flush of the
      // replayed unmap already invalidated it (QEMU sends VFIO devices no device-TLB notification either).
      return;
    }
    const hostPasid = gpasid === undefined ? undefined : this.vm.pasids.vmmGuestToHost(gpasid, 'device-TLB invalidation');
    this.lookups();
    if (gpasid !== undefined && hostPasid === undefined) {
      this.step('vmm', 'trap-descriptor', `${d.typeName} for guest PASID ${gpasid}, which maps to no host PASID: nothing to forward`, { pasid: { guest: gpasid } });
      return;
    }
    this.vm.hostIommu.invalidateDeviceTlb(dev.host, withPasid ? hostPasid : undefined, f);
    this.step('vmm', 'trap-descriptor', `${d.typeName} for ${formatPciAddress(dev.address)}${gpasid !== undefined ? ` PASID ${gpasid}` : ''}: forwarded to ${dev.host.name}${hostPasid !== undefined ? ` PASID ${hostPasid}` : ''}`, { ...(gpasid !== undefined ? { pasid: { guest: gpasid, host: hostPasid! } } : {}) });
  }

  // ---- page requests ----

  /**
   * The host's IOPF handler for a nested bind (seed 000, PRQ steps 1-3): the host reports the request with
   * the host PASID and the guest PASID from the bind's private data, so the VMM needs no lookup; it injects
   * the request into the guest's page request queue with the guest RID and guest PASID.
   */
  private hostPageRequest(dev: VmDevice, boundGuestPasid: number, group: readonly PageFault[], token: PageRequestToken): void {
    const first = group[0]!;
    const hostPasid = first.pasid;
    const h = this.vm.hostIommu;
    let guestPasid: number | undefined;
    if (h.path === 'bind') {
      // The host driver's fast H-to-G: the guest PASID it kept as the bind's private data.
      guestPasid = hostPasid === undefined ? undefined : this.vm.pasids.driverHostToGuest(hostPasid, dev.host.name, 'page request');
    } else {
      // iommufd hands the VMM the fault of the nested HWPT it allocated for one guest PASID, with the wire
      // PASID: the VMM's own record of that HWPT gives the guest PASID, a keyed lookup.
      guestPasid = boundGuestPasid;
      this.vm.pasidTrace.record({ side: 'vmm', direction: 'H-to-G', kind: 'fast', vm: this.vm.name, from: hostPasid ?? -1, to: guestPasid, device: dev.host.name, why: 'page request (the nested HWPT it came on)' });
    }
    this.lookups();
    const viommu = this.vm.viommu!;
    if (typeof guestPasid !== 'number') {
      this.vm.note({ code: 'unmapped-page-request', vm: this.vm.name, ...(hostPasid !== undefined ? { hostPasid } : {}), message: `a page request from ${dev.host.name} for host PASID ${hostPasid ?? 'none'} maps to no guest PASID: answered invalid on the host` });
      h.pageResponse(token, 'invalid');
      return;
    }
    const rid = pciRid(dev.address);
    for (const f of group) {
      const outcome = viommu.receivePageRequest({ rid, pasid: guestPasid, address: f.address, read: f.read, write: f.write, exec: f.exec, priv: f.priv, lastInGroup: f.lastPage, prgIndex: f.prgIndex });
      this.step('vmm', 'inject-page-request', `${formatPciAddress(dev.address)} PASID ${guestPasid} address 0x${f.address.toString(16)} PRG ${f.prgIndex}: ${outcome} in the guest's page request queue`, { pasid: { guest: guestPasid, ...(hostPasid !== undefined ? { host: hostPasid } : {}) } });
    }
    this.pending.set(`${rid}:${guestPasid}:${first.prgIndex}`, { device: dev, hostPasid, token });
  }

  /** The guest answered a page request: G-to-H, then the host's page response (seed 000, PR response 1-3). */
  private forwardResponse(guestRid: number, guestPasid: number | undefined, prgIndex: number, code: number): void {
    const key = `${guestRid}:${guestPasid}:${prgIndex}`;
    const p = this.pending.get(key);
    if (!p) {
      this.vm.note({ code: 'stale-page-response', vm: this.vm.name, ...(guestPasid !== undefined ? { guestPasid } : {}), message: `a page group response from the guest (RID 0x${guestRid.toString(16)}, PASID ${guestPasid ?? 'none'}, PRG ${prgIndex}) matches no request the VMM injected: rejected` });
      return;
    }
    this.pending.delete(key);
    const hostPasid = guestPasid === undefined ? undefined : this.vm.pasids.vmmGuestToHost(guestPasid, 'page response');
    this.lookups();
    const codeName: PageResponseCode = code === 0 ? 'success' : code === 1 ? 'invalid' : 'failure';
    this.vm.hostIommu.pageResponse(p.token, codeName);
    this.step('host-driver', 'page-response', `${p.device.host.name} PASID ${hostPasid} PRG ${prgIndex}: ${codeName}`, { pasid: { ...(guestPasid !== undefined ? { guest: guestPasid } : {}), ...(hostPasid !== undefined ? { host: hostPasid } : {}) } });
  }
}
