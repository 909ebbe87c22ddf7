import type { DeviceDma, DmaOutcome } from '../hw/machine';
import type { InterruptResult, TranslateOptions } from '../hw/types';
import { linuxFaultReason } from '../vtd/fault-reasons';
import { FSTS } from '../vtd/registers';
import type { DeviceInfo } from './device';
import type { DmaFault } from './domain';
import type { IntelIommu } from './intel-iommu';
import { compatibilityAllocation, type MsiAllocation, type MsiOptions } from './irq-remapping';
import { dmarFaultIsRatelimited, dmarFaultLines, faultStatusLine } from './log';
import type { KernelState } from './state';

/** DMA and interrupts from devices, and what services them: the fault handler (dmar_fault) and MSIs. */
export class Interrupts {
  /** Ratelimit of the fault printk (10 lines per 5 s of simulated time, as printk_ratelimit). */
  private readonly faultRatelimit = { windowStart: 0, printed: 0, suppressed: 0 };

  constructor(private readonly k: KernelState) {}

  /** DMA from a device, then the interrupts it raised are serviced (fault handler, PRQ thread). */
  dma(which: string | number | DeviceInfo, req: DeviceDma): DmaOutcome {
    const dev = this.k.device(which);
    const out = this.k.machine.dma(dev.endpoint, req);
    this.serviceInterrupts();
    return out;
  }

  /**
   * pci_alloc_irq_vectors for MSI: with interrupt remapping, IRTEs written and flushed and the remappable-format
   * message; without, the compatibility-format message.
   */
  allocMsi(which: string | number | DeviceInfo, options: MsiOptions): MsiAllocation {
    const dev = this.k.device(which);
    return this.k.irq ? this.k.irq.alloc(dev, options) : compatibilityAllocation(dev, options);
  }

  /** free_irq / pci_free_irq_vectors: the entries cleared and flushed. */
  freeMsi(a: MsiAllocation): void {
    this.k.irq?.free(a);
  }

  /** The device writes an MSI (address 0xfeeXXXXX, data); the IOMMU remaps it; its faults are handled. */
  interrupt(which: string | number | DeviceInfo, msg: { readonly address: number; readonly data: number }, options?: TranslateOptions): InterruptResult {
    const dev = this.k.device(which);
    const r = this.k.machine.interrupt(dev.endpoint, msg, options);
    this.serviceInterrupts();
    return r;
  }

  /** Runs the fault handler and the page-request thread of every unit that has something pending. */
  serviceInterrupts(): void {
    for (const iommu of this.k.iommus) {
      if (iommu.unit.readRegister('FSTS').lo & (1 << FSTS.PPF)) this.dmarFault(iommu);
      if (iommu.prqBase && iommu.unit.readRegister('PRS').lo & 1) this.k.prq.prqThread(iommu);
    }
  }

  /** dmar_fault: print and clear each pending fault record, report it to the domain's fault handlers. */
  private dmarFault(iommu: IntelIommu): void {
    const unit = iommu.unit;
    const fsts = unit.readRegister('FSTS').lo;
    this.printRatelimited([faultStatusLine(fsts, this.k.version)]);
    for (const rec of unit.pendingFaults()) {
      const pasid = rec.pasid ?? undefined;
      // Interrupt-remapping records carry the interrupt index in FI bits 63:48 (`fault index` = addr >> 48).
      const intr = linuxFaultReason(rec.reason).type === 'interrupt-remap';
      this.printRatelimited(dmarFaultLines({ sid: rec.sid, ...(pasid !== undefined ? { pasid } : {}), address: rec.address.toHex(1), reason: rec.reason, write: rec.write, ...(intr ? { index: rec.address.hi >>> 16 } : {}) }, this.k.version));
      const { base } = unit.faultRecordingRegisters;
      unit.writeRegister(base + rec.index * 16 + 8, unit.readRegister(base + rec.index * 16 + 8).withField(63, 63, 1));
      if (intr) continue; // dmar_fault_do_one returns after printing an interrupt-remapping fault
      const dev = this.k.deviceOn(iommu, rec.sid);
      const domain = dev?.domainAt(pasid);
      if (dev && domain) {
        const att = domain.attachedAt(dev, pasid);
        const fault: DmaFault = { device: dev, ...(pasid !== undefined ? { pasid } : {}), address: '0x' + rec.address.toHex(1), reason: rec.reason, reasonText: linuxFaultReason(rec.reason).text, write: rec.write, ...(att?.privateData ? { privateData: att.privateData } : {}) };
        for (const h of domain.faultHandlers) h(fault);
      }
    }
    unit.writeRegister('FSTS', (1 << FSTS.PFO) | (1 << FSTS.PPF) | (1 << FSTS.PRO));
  }

  private printRatelimited(lines: string[]): void {
    if (!dmarFaultIsRatelimited(this.k.version)) {
      for (const l of lines) this.k.log.err(l);
      return;
    }
    const r = this.faultRatelimit;
    const now = this.k.log.now;
    if (now - r.windowStart >= 5) {
      if (r.suppressed) this.k.log.warn(`dmar_fault: ${r.suppressed} callbacks suppressed`);
      r.windowStart = now;
      r.printed = 0;
      r.suppressed = 0;
    }
    if (r.printed >= 10) {
      r.suppressed++;
      return;
    }
    r.printed++;
    for (const l of lines) this.k.log.err(l);
  }
}
