import { contextEntryAddress, writeEntry, writeLegacyContext } from '../vtd/tables';
import type { DeviceInfo } from './device';
import type { Attachment, Domain } from './domain';
import { fail } from './errors';
import { assignTag, devTlbDesc, type FlushOptions, flushWriteBuffer, unassignTag } from './flush';
import { isAtLeast, type KernelVersion } from './log';
import { IOMMU_NO_PASID } from './pasid-alloc';
import { Descs, FULL_RANGE_MASK } from './qi';
import type { KernelState } from './state';

/** What an attach may carry besides its flush options: a note for the attachment tree, per-attachment data. */
export interface AttachOptions extends FlushOptions {
  readonly note?: string;
  readonly privateData?: Readonly<Record<string, number | string>>;
}

/**
 * When legacy mode turns a device's ATS off as its RID is blocked. Up to 6.14 device_block_translation calls
 * iommu_disable_pci_caps before clearing the context entry, so the clear issues no device-TLB invalidation;
 * 5518f239aff1 "iommu/vt-d: Move scalable mode ATS enablement to probe path" (v6.15; Lu Baolu's batch of
 * 2025-03-10, whose patch mail quotes the diff) moved it into domain_context_clear, after the clear and
 * its flushes. Checked: the 6.12.118 source has the old order.
 */
const ATS_ENABLEMENT = { legacyOffAfterClear: '6.15' } as const satisfies Record<string, KernelVersion>;

/**
 * Attaching, replacing and detaching domains at a RID and at (RID, PASID): the IOMMU core's calls and the
 * driver's attach_dev / set_dev_pasid with their tear-down, cache tags and DIDs, legacy context entries and ATS.
 */
export class Attachments {
  constructor(private readonly k: KernelState) {}

  private addAttachment(domain: Domain, dev: DeviceInfo, pasid: number | undefined, o: AttachOptions = {}): void {
    const a: Attachment = { device: dev, ...(pasid !== undefined ? { pasid } : {}), ...(o.note ? { note: o.note } : {}), ...(o.privateData ? { privateData: o.privateData } : {}) };
    domain.addAttachment(a);
  }

  private removeAttachment(domain: Domain, dev: DeviceInfo, pasid: number | undefined): void {
    domain.removeAttachment(dev, pasid);
  }

  /** Tags and DID for one (device, PASID) attachment of `domain` (domain_add_dev_pasid). */
  private addDevPasid(domain: Domain, dev: DeviceInfo, pasid: number, taken?: number): number {
    const iommu = dev.iommu;
    const did = taken ?? this.k.alloc.takeDid(domain, iommu);
    if (domain.type === 'identity' || domain.type === 'blocked') return did;
    assignTag(domain, 'iotlb', iommu, did, pasid, dev);
    if (dev.atsEnabled) assignTag(domain, 'devtlb', iommu, did, pasid, dev);
    if (domain.type === 'nested') {
      assignTag(domain.parent!, 'nesting_iotlb', iommu, did, pasid, dev);
      if (dev.atsEnabled) assignTag(domain.parent!, 'nesting_devtlb', iommu, did, pasid, dev);
    }
    return did;
  }

  private removeDevPasid(domain: Domain, dev: DeviceInfo, pasid: number): void {
    const iommu = dev.iommu;
    const did = this.k.alloc.didOf(domain, iommu);
    if (did !== undefined && domain.type !== 'identity' && domain.type !== 'blocked') {
      unassignTag(domain, 'iotlb', iommu, did, pasid, dev);
      unassignTag(domain, 'devtlb', iommu, did, pasid, dev);
      if (domain.type === 'nested') {
        unassignTag(domain.parent!, 'nesting_iotlb', iommu, did, pasid, dev);
        unassignTag(domain.parent!, 'nesting_devtlb', iommu, did, pasid, dev);
      }
    }
    this.k.alloc.releaseDid(domain, iommu);
  }

  /**
   * device_block_translation: tear down what the RID has, leaving DMA without PASID blocked. A RID already
   * blocked (info->domain_attached false) is left alone.
   */
  blockRid(dev: DeviceInfo, options: FlushOptions): void {
    const old = dev.ridDomain;
    if (!old) return;
    const iommu = dev.iommu;
    if (old.type === 'blocked') {
      // Nothing attached in hardware: only the core's record of the blocking domain goes.
    } else if (iommu.scalable) {
      this.k.entries.teardownPasidEntry(dev, IOMMU_NO_PASID, false, options);
    } else {
      // device_block_translation: the cache tags go first (removeDevPasid gives the DID back after), then
      // domain_context_clear_one: clear P, context-cache device-selective with the entry's DID, IOTLB DSI, the
      // whole device TLB while ATS is on (intel_context_flush_no_pasid), then zero the entry. ATS goes off
      // before the clear up to 6.14 (iommu_disable_pci_caps), so no device-TLB flush is issued, and after it
      // from 6.15 (iommu_disable_pci_ats in domain_context_clear).
      const atsOffFirst = !isAtLeast(this.k.version, ATS_ENABLEMENT.legacyOffAfterClear);
      if (atsOffFirst) this.disableAts(dev);
      const mem = this.k.machine.memory;
      const ctxAddr = contextEntryAddress(iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, false);
      const did = (mem.readLo(ctxAddr + 8) >>> 8) & 0xffff;
      mem.write64(ctxAddr, mem.readHi(ctxAddr), (mem.readLo(ctxAddr) & ~1) >>> 0, 'context-entry.qw0');
      if (options.skipInvalidation !== true) {
        iommu.qi.submit([Descs.contextCacheDevice(did, dev.sid)]);
        iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
        if (dev.atsEnabled && options.skipInvalidation !== 'device-tlb') iommu.qi.submit([devTlbDesc(dev, 0, 0, FULL_RANGE_MASK)]);
      }
      writeEntry(mem, ctxAddr, [0, 0, 0, 0], 'context-entry');
      if (!atsOffFirst) this.disableAts(dev);
    }
    this.removeDevPasid(old, dev, IOMMU_NO_PASID);
    this.removeAttachment(old, dev, undefined);
    dev.ridDomain = undefined;
  }

  /**
   * iommu_attach_device / iommu_group_replace_domain, then the driver's attach_dev (6.17). The core does
   * nothing when the group already has this domain (__iommu_group_set_domain_internal). The driver blocks
   * the RID first and checks afterwards, so a refused attach leaves the RID blocked (info->domain NULL, the
   * PASID or context entry cleared) while the core still records the old domain: the failed device is not
   * reverted, and attaching that old domain again is a no-op that leaves it blocked. The old domain's IOPF
   * is turned off only by the blocking domain (blocking_domain_attach_dev); a paging, nested or identity
   * attach that replaces a fault-taking domain keeps the device's IOPF reference, as 6.17 does.
   */
  attachDevice(domain: Domain, which: string | number | DeviceInfo, options: AttachOptions = {}): void {
    const dev = this.k.device(which);
    if (domain.freed) fail('EINVAL', `${domain.name} was freed`);
    if (domain.type === 'sva') fail('EINVAL', 'an SVA domain is attached to a PASID, not a RID');
    if (dev.coreRidDomain === domain) return;
    if (domain.type === 'blocked') {
      // blocking_domain_attach_dev: IOPF off for the driver's current domain, then device_block_translation.
      this.k.iopf.iopfDisable(dev, dev.ridDomain);
      this.blockRid(dev, options);
      this.addAttachment(domain, dev, undefined, options);
      dev.ridDomain = domain;
      dev.coreRidDomain = domain;
      return;
    }
    const iommu = dev.iommu;
    // intel_iommu_attach_device, intel_nested_attach_dev, identity_domain_attach_dev: block first.
    this.blockRid(dev, options);
    this.k.compat.checkCompatible(domain, dev, true);
    let did: number;
    if (domain.type === 'nested') {
      // intel_nested_attach_dev: DID and cache tags, then IOPF, then the nested entry (whose checks may fail).
      did = this.k.alloc.takeDidLogged(domain, dev);
      this.addDevPasid(domain, dev, IOMMU_NO_PASID, did);
      try {
        this.k.iopf.iopfEnable(dev, domain);
      } catch (e) {
        this.removeDevPasid(domain, dev, IOMMU_NO_PASID);
        throw e;
      }
      try {
        this.k.compat.checkNestedSetup(domain, dev);
      } catch (e) {
        this.k.iopf.iopfDisable(dev, domain);
        this.removeDevPasid(domain, dev, IOMMU_NO_PASID);
        throw e;
      }
    } else {
      // iopf_for_domain_set, then dmar_domain_attach_device (domain_attach_iommu, the entry, cache tags; in
      // legacy mode the tags come after the context entry and ATS).
      this.k.iopf.iopfEnable(dev, domain);
      try {
        did = iommu.scalable ? this.addDevPasid(domain, dev, IOMMU_NO_PASID) : this.k.alloc.takeDid(domain, iommu);
      } catch (e) {
        this.k.iopf.iopfDisable(dev, domain);
        throw e;
      }
    }
    if (iommu.scalable) {
      try {
        this.k.entries.setupPasidEntry(dev, IOMMU_NO_PASID, domain, did, options);
      } catch (e) {
        // dmar_domain_attach_device's out_block_translation gives the DID back; the caller drops the IOPF
        // reference (iopf_for_domain_remove). The RID stays blocked.
        this.removeDevPasid(domain, dev, IOMMU_NO_PASID);
        this.k.iopf.iopfDisable(dev, domain);
        throw e;
      }
    } else {
      this.legacyContextMapping(dev, domain, did, options);
      this.addDevPasid(domain, dev, IOMMU_NO_PASID, did);
    }
    this.addAttachment(domain, dev, undefined, options);
    dev.ridDomain = domain;
    dev.coreRidDomain = domain;
  }

  /**
   * Legacy mode: domain_context_mapping_one for a paging domain (TT 01, device-TLB translation, when the
   * device supports ATS, else 00; AW of the domain's table) or context_setup_pass_through for the identity
   * domain (TT 10, DID 1, AW = msagaw), then context_present_cache_flush: with caching mode a
   * device-selective context-cache invalidation with DID 0 and a domain-selective IOTLB flush of the new DID,
   * else a write-buffer flush. A paging domain then has ATS enabled (iommu_enable_pci_caps in 6.12, in
   * domain_context_mapping from 6.15); pass-through never does.
   */
  private legacyContextMapping(dev: DeviceInfo, domain: Domain, did: number, options: FlushOptions): void {
    const iommu = dev.iommu;
    const identity = domain.type === 'identity';
    writeLegacyContext(this.k.machine.memory, iommu.contextTable(dev.sid >> 8, dev.sid & 0xff), dev.sid & 0xff, {
      tt: identity ? 2 : dev.atsSupported ? 1 : 0,
      aw: identity ? iommu.msagaw : domain.pageTable!.levels - 2,
      did,
      slptptr: identity ? 0 : domain.pageTable!.root,
    });
    if (options.skipInvalidation !== true) {
      if (iommu.cachingMode) {
        iommu.qi.submit([Descs.contextCacheDevice(0, dev.sid)]);
        iommu.qi.submit([Descs.iotlbDsi(iommu.unit, did)]);
      } else {
        flushWriteBuffer(iommu.unit);
      }
    }
    if (!identity && dev.atsSupported) dev.atsEnabled = dev.endpoint.atsEnabled = true;
  }

  /** pci_disable_ats: the device stops using (and caching) translations. */
  private disableAts(dev: DeviceInfo): void {
    dev.atsEnabled = dev.endpoint.atsEnabled = false;
  }

  /** Makes the RID blocked (the blocking domain's attach_dev). */
  detachDevice(which: string | number | DeviceInfo, options: FlushOptions = {}): void {
    this.attachDevice(this.k.blocked, which, options);
  }

  /**
   * iommu_attach_device_pasid (set_dev_pasid): the (RID, PASID) pair gets its own entry. The core checks
   * first: PASID 0 is EINVAL, a PASID beyond a PASID-capable device's width is EINVAL, an attached PASID is
   * EBUSY (use replaceDevicePasid). A device without PASID support (max_pasids 0) is skipped by the core
   * since 6.15 (b3f6fcd8404f "Skip PASID validation for devices without PASID capability"): the attach
   * succeeds and the driver is never called, since such a device cannot send a PASID.
   */
  attachDevicePasid(domain: Domain, which: string | number | DeviceInfo, pasid: number, options: AttachOptions = {}): void {
    const dev = this.k.device(which);
    if (domain.freed) fail('EINVAL', `${domain.name} was freed`);
    if (pasid === IOMMU_NO_PASID) fail('EINVAL', 'PASID 0 is the RID');
    if (dev.maxPasids > 0 && pasid >= dev.maxPasids) fail('EINVAL', `${dev.name}: PASID ${pasid} is outside [1, ${dev.maxPasids - 1}]`);
    if (dev.pasidDomains.has(pasid)) fail('EBUSY', `${dev.name}: PASID ${pasid} is already attached to ${dev.pasidDomains.get(pasid)!.name}`);
    if (dev.maxPasids === 0) {
      this.addAttachment(domain, dev, pasid, { ...options, note: options.note ?? 'core only: the device has no PASID capability' });
      dev.pasidDomains.set(pasid, domain);
      return;
    }
    this.setDevPasid(domain, dev, pasid, undefined, options);
  }

  /** iommu_replace_device_pasid: newest Linux tears the old entry down (old DID flushed) and sets up the new one. */
  replaceDevicePasid(domain: Domain, which: string | number | DeviceInfo, pasid: number, options: AttachOptions = {}): void {
    const dev = this.k.device(which);
    if (pasid === IOMMU_NO_PASID) fail('EINVAL', 'PASID 0 is the RID');
    const old = dev.pasidDomains.get(pasid);
    if (!old) fail('EINVAL', `${dev.name}: nothing is attached at PASID ${pasid}`);
    if (old === domain) return;
    if (dev.maxPasids === 0) {
      this.removeAttachment(old, dev, pasid);
      this.addAttachment(domain, dev, pasid, { ...options, note: options.note ?? 'core only: the device has no PASID capability' });
      dev.pasidDomains.set(pasid, domain);
      return;
    }
    this.setDevPasid(domain, dev, pasid, old, options);
  }

  private setDevPasid(domain: Domain, dev: DeviceInfo, pasid: number, old: Domain | undefined, options: AttachOptions): void {
    const iommu = dev.iommu;
    if (!iommu.scalable || !iommu.unit.ecap.pasid) fail('EOPNOTSUPP', 'PASID attachment needs scalable mode and ECAP.PASID');
    if (domain.dirtyOps) fail('EINVAL', 'a dirty-tracking domain cannot be attached to a PASID');
    if (domain.type === 'blocked') {
      if (old) this.detachDevicePasid(dev, pasid, options);
      return;
    }
    if (domain.type === 'sva') this.k.sva.svaSupported(dev); // intel_svm_set_dev_pasid
    this.k.compat.checkCompatible(domain, dev, false);
    this.k.iopf.checkIopf(dev, domain);
    if (domain.type === 'nested') this.k.compat.checkNestedSetup(domain, dev);
    const did = this.addDevPasid(domain, dev, pasid);
    // iopf_for_domain_replace: on for the new domain, then off for the old one.
    this.k.iopf.iopfEnable(dev, domain);
    if (old) {
      this.k.iopf.iopfDisable(dev, old);
      this.k.entries.teardownPasidEntry(dev, pasid, false, options);
    }
    try {
      this.k.entries.setupPasidEntry(dev, pasid, domain, did, options);
    } catch (e) {
      // out_unwind_iopf: iopf_for_domain_replace(old, domain) (the old domain's IOPF back first, so the count
      // does not pass through 0), then out_remove_dev_pasid.
      if (old) this.k.iopf.iopfEnable(dev, old);
      this.k.iopf.iopfDisable(dev, domain);
      this.removeDevPasid(domain, dev, pasid);
      throw e;
    }
    if (old) {
      this.removeDevPasid(old, dev, pasid);
      this.removeAttachment(old, dev, pasid);
    }
    this.addAttachment(domain, dev, pasid, options);
    dev.pasidDomains.set(pasid, domain);
  }

  /**
   * iommu_detach_device_pasid: the blocking domain's set_dev_pasid: tear down (with the page-request drain
   * while IOPF is on), IOPF off (the last user answers what is still pending), drop tags and DID.
   */
  detachDevicePasid(which: string | number | DeviceInfo, pasid: number, options: FlushOptions = {}): void {
    const dev = this.k.device(which);
    const old = dev.pasidDomains.get(pasid);
    if (!old) fail('EINVAL', `${dev.name}: nothing is attached at PASID ${pasid}`);
    if (dev.maxPasids > 0) {
      this.k.entries.teardownPasidEntry(dev, pasid, false, options);
      this.k.iopf.iopfDisable(dev, old);
      this.removeDevPasid(old, dev, pasid);
    }
    this.removeAttachment(old, dev, pasid);
    dev.pasidDomains.delete(pasid);
  }
}
