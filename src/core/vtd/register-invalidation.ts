import type { EventStream } from '../hw/events';
import type { U64 } from '../u64';
import type { VtdCap, VtdEcap } from './cap';
import { DESC_NAMES, DescType } from './descriptors';
import { invalidateContextCache, invalidateIotlb, psiRange } from './invalidation';
import type { RegisterFile } from './register-file';
import { GSTS, Reg } from './registers';
import { rawWords } from './structures';
import type { Translation } from './translation';

const CONTEXT_GRANULARITY: Record<number, string> = { 1: 'global', 2: 'domain', 3: 'device' };
const IOTLB_GRANULARITY: Record<number, string> = { 1: 'global', 2: 'domain', 3: 'page' };

/**
 * Register-based invalidation, the interface of units without (or before enabling) queued invalidation: the
 * context command register CCMD (0x28) and the IOTLB registers at ECAP.IRO * 16 (IVA, then IOTLB at +8).
 *
 * CCMD: ICC 63, CIRG 62:61, CAIG 60:59, FM 33:32, SID 31:16, DID 15:0. IVA: ADDR 63:12, IH 6, AM 5:0.
 * IOTLB: IVT 63, IIRG 61:60, IAIG 58:57, DR 49, DW 48, DID 47:32 (Linux's DMA_CCMD_* and DMA_TLB_* macros).
 * Software writes the request with ICC (IVT) set; the hardware invalidates, clears ICC (IVT) and reports
 * the granularity it actually used in CAIG (IAIG), which may be coarser than the one asked for. A reserved
 * granularity (00), or an incorrect request such as an address mask above CAP.MAMV, is ignored: completed
 * with CAIG (IAIG) 00, which Linux reports as "Flush IOTLB failed". The unit performs what was asked, except
 * a page-selective IOTLB request on a unit without CAP.PSI, which it performs domain-selectively. Each
 * performed request emits the `invalidation` event of the equivalent descriptor (its fields as written, its
 * `granularity` the one performed), so the two interfaces read alike.
 *
 * Not available while queued invalidation is enabled (GSTS.QIES): the request is ignored and ICC (IVT) stays
 * set, as QEMU's vtd_handle_ccmd_write / vtd_handle_iotlb_write do. Nor on units of version 6 and later:
 * "Register-based Invalidation isn't supported by Intel VT-d version 6 and beyond" (VT-d spec rev 3.3
 * section 6.5, as Xen's "VT-d: Don't assume register-based invalidation is always supported" cites it).
 */
export class RegisterInvalidation {
  readonly ivaOffset: number;
  readonly iotlbOffset: number;
  private readonly supported: boolean;

  constructor(
    private readonly regs: RegisterFile,
    private readonly events: EventStream,
    private readonly unitName: string,
    private readonly cap: VtdCap,
    ecap: VtdEcap,
    version: readonly [number, number],
    private readonly t: Translation,
  ) {
    this.ivaOffset = ecap.iro * 16;
    this.iotlbOffset = this.ivaOffset + 8;
    this.supported = version[0] < 6;
    regs.nameRegister(this.ivaOffset, 'IVA', 64);
    regs.nameRegister(this.iotlbOffset, 'IOTLB', 64);
    regs.claim(Reg.CCMD, (v) => this.writeContextCommand(v));
    regs.claim(this.iotlbOffset, (v) => this.writeIotlb(v));
  }

  /** Whether a request written now is performed (the interface exists and queued invalidation is off). */
  private get active(): boolean {
    return this.supported && !this.regs.bit(Reg.GSTS, GSTS.QIES);
  }

  private writeContextCommand(v: U64): void {
    this.regs.set(Reg.CCMD, v.hi, v.lo);
    if (!(v.hi >>> 31) || !this.active) return;
    const g = (v.hi >>> 29) & 3;
    const fields = { G: g, DID: v.lo & 0xffff, SID: v.lo >>> 16, FM: v.hi & 3 };
    const dropped = g === 0 ? 0 : invalidateContextCache(this.t.lookup, g, fields.DID, fields.SID, fields.FM);
    // Done: ICC clear, CAIG = the granularity performed (00 when the request was ignored).
    this.regs.set(Reg.CCMD, ((v.hi & 0x67ff_ffff) | (g << 27)) >>> 0, v.lo);
    if (g !== 0) this.emit('CCMD', DescType.CONTEXT_CACHE, CONTEXT_GRANULARITY[g]!, [v], fields, { 'context-cache': dropped });
  }

  private writeIotlb(v: U64): void {
    this.regs.set(this.iotlbOffset, v.hi, v.lo);
    if (!(v.hi >>> 31) || !this.active) return;
    const asked = (v.hi >>> 28) & 3;
    const iva = this.regs.get(this.ivaOffset);
    const fields = { G: asked, DW: (v.hi >>> 16) & 1, DR: (v.hi >>> 17) & 1, DID: v.hi & 0xffff, AM: iva.lo & 0x3f, IH: (iva.lo >>> 6) & 1, ADDR: iva.hi * 0x10_0000 + (iva.lo >>> 12) };
    const range = psiRange(fields.ADDR, fields.AM, fields.IH);
    let g = asked === 3 && !this.cap.psi ? 2 : asked;
    if (g === 3 && (fields.AM > this.cap.mamv || range.base % range.size !== 0)) g = 0;
    const n = g === 0 ? undefined : invalidateIotlb(this.t.iotlb, g, fields.DID, range);
    // Done: IVT clear, IAIG = the granularity performed (00: ignored).
    this.regs.set(this.iotlbOffset, ((v.hi & 0x79ff_ffff) | (g << 25)) >>> 0, v.lo);
    if (n !== undefined) this.emit('IOTLB', DescType.IOTLB, IOTLB_GRANULARITY[g]!, [v, iva], fields, { iotlb: n.iotlb, 'paging-structure-cache': n.pwc });
  }

  private emit(register: string, type: number, granularity: string, values: readonly { hi: number; lo: number }[], fields: Record<string, number>, dropped: Record<string, number>): void {
    if (!this.events.active) return;
    this.events.emit({
      type: 'invalidation',
      unit: this.unitName,
      index: -1,
      register,
      descriptorType: DESC_NAMES[type]!,
      granularity,
      words: rawWords(values.flatMap((w) => [w.lo, w.hi]), values.length),
      fields,
      dropped,
    });
  }
}
