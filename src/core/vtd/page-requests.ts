import type { Endpoint } from '../hw/endpoint';
import type { EventStream } from '../hw/events';
import type { PhysicalMemory } from '../hw/memory';
import type { PriRequest } from '../hw/types';
import { encodePageRequest, responseCodeName } from './descriptors';
import type { RegisterFile } from './register-file';
import { PRS, Reg } from './registers';
import { type Req, TWO_32 } from './request';
import { rawWords } from './structures';
import type { Translation } from './translation';

/**
 * The page request queue: PQA (base and size), PQH (software's) and PQT (the hardware's), page request
 * descriptors written for PCIe PRI requests, PRS (PPR pending, PRO overflow, write 1 to clear), the page
 * request event through PECTL, and page group responses back to the endpoint.
 */
export class PageRequestQueue {
  constructor(
    private readonly regs: RegisterFile,
    private readonly memory: PhysicalMemory,
    private readonly events: EventStream,
    private readonly unitName: string,
    private readonly t: Translation,
    private readonly endpointOf: (sid: number) => Endpoint | undefined,
  ) {
    regs.set(Reg.PECTL, 0, 0x8000_0000); // interrupts masked until software unmasks them
    regs.readOnly(Reg.PQT);
    regs.claim(Reg.PRS, (v) => {
      const r = regs.get(Reg.PRS);
      regs.set(Reg.PRS, 0, r.lo & ~(v.lo & ((1 << PRS.PPR) | (1 << PRS.PRO))));
    });
  }

  get geometry(): { base: number; entries: number; head: number; tail: number } {
    const pqa = this.regs.get(Reg.PQA);
    const bytes = 4096 * 2 ** (pqa.lo & 7);
    return {
      base: pqa.hi * TWO_32 + ((pqa.lo & 0xffff_f000) >>> 0),
      entries: bytes / 32,
      head: this.regs.get(Reg.PQH).lo / 32,
      tail: this.regs.get(Reg.PQT).lo / 32,
    };
  }

  /**
   * A page request from an endpoint (PCIe PRI) arrives. The hardware checks the context, writes a page
   * request descriptor at PQT and raises the page request event; when the queue is full it sets PRS.PRO
   * and, for a last-in-group request, answers the device itself with Success so it retries.
   */
  receive(req: PriRequest): 'queued' | 'overflow' | 'rejected' {
    let outcome: 'queued' | 'overflow' | 'rejected' = 'queued';
    let queueIndex: number | null = null;
    const words = encodePageRequest(req);
    const q: Req = { sid: req.rid, hasPasid: req.pasid !== undefined, pasid: req.pasid ?? 0, hi: Math.floor(req.address / TWO_32), lo: req.address >>> 0, write: req.write, exec: req.exec, priv: req.priv, kind: 'translation-request' };
    if (!this.t.lookup.scalable) {
      this.t.faultFor({ ...q, kind: 'untranslated' }, 0x32, false);
      outcome = 'rejected';
    } else {
      const ctx = this.t.contextFor(req.rid);
      if (typeof ctx === 'number' || !ctx.pre) {
        this.t.faultFor({ ...q, kind: 'untranslated' }, typeof ctx === 'number' ? ctx : 0x47, typeof ctx === 'number' ? this.t.lookup.lastCtxFpd : ctx.fpd);
        outcome = 'rejected';
      }
    }
    if (outcome === 'queued') {
      const pq = this.geometry;
      const next = (pq.tail + 1) % pq.entries;
      if (next === pq.head || pq.entries === 0) {
        outcome = 'overflow';
        this.regs.setBit(Reg.PRS, PRS.PRO, true);
      } else {
        const addr = pq.base + pq.tail * 32;
        for (let i = 0; i < 8; i += 2) this.memory.write64(addr + i * 4, words[i + 1]!, words[i]!, 'prq-descriptor');
        queueIndex = pq.tail;
        this.regs.set(Reg.PQT, 0, next * 32);
        this.regs.setBit(Reg.PRS, PRS.PPR, true);
        const pectl = this.regs.get(Reg.PECTL).lo;
        if (!(pectl & 0x8000_0000) && !(pectl & 0x4000_0000)) {
          this.regs.set(Reg.PECTL, 0, pectl | 0x4000_0000);
          if (this.events.active) this.events.emit({ type: 'interrupt', unit: this.unitName, source: 'page-request' });
        }
      }
    }
    if (this.events.active) {
      this.events.emit({
        type: 'page-request',
        unit: this.unitName,
        sid: req.rid,
        pasid: req.pasid ?? null,
        address: '0x' + req.address.toString(16),
        read: req.read,
        write: req.write,
        exec: req.exec,
        priv: req.priv,
        prgIndex: req.prgIndex,
        lastInGroup: req.lastInGroup,
        outcome,
        queueIndex,
        descriptor: rawWords(words, 4),
      });
    }
    if (outcome !== 'queued' && req.lastInGroup) {
      // Overflow: Success so the device retries. Rejected: Invalid Request so it stops waiting for this group.
      const code = outcome === 'overflow' ? 0 : 1;
      this.endpointOf(req.rid)?.completeGroup(req.pasid ?? -1, req.prgIndex, code);
      if (this.events.active) {
        this.events.emit({ type: 'page-response', unit: this.unitName, sid: req.rid, pasid: req.pasid ?? null, prgIndex: req.prgIndex, code, codeName: responseCodeName(code), origin: 'hardware-overflow' });
      }
    }
    return outcome;
  }

  /**
   * A page group response (the invalidation queue's Page Group Response descriptor) reaches the endpoint;
   * returns whether it completed an outstanding group.
   */
  respond(rid: number, pasid: number, prgIndex: number, code: number): boolean {
    const group = this.endpointOf(rid)?.completeGroup(pasid, prgIndex, code);
    if (this.events.active) {
      this.events.emit({ type: 'page-response', unit: this.unitName, sid: rid, pasid: pasid >= 0 ? pasid : null, prgIndex, code, codeName: responseCodeName(code), origin: 'descriptor' });
    }
    return group !== undefined;
  }
}
