import { linuxFaultReason } from '../core/vtd/fault-reasons';
import { FSTS } from '../core/vtd/registers';
import { bdfToDevice, hexNumber, normalizeHex } from './hex';
import type { LogEvent } from './log-event';
import { type Continuation, type LineInfo, type ReadResult, MAX_JOINED, events } from './log-reader';
import { absorbReasonTail, base } from './vtd-line';
import { WalkDump } from './vtd-walk-dump';

// The Linux driver's fault lines (dmar.c): a DMA or interrupt-remapping fault in every format it has had, and
// the fault status line before them.


// [DMA Read NO_PASID] / [DMA Write PASID 0x1] (5.14+), [DMA Read] (older), then the BDF (with 0x in
// 5.14 only), `PASID %x` after the BDF (5.4-5.13), the address (0x from 5.14), and the reason, decimal
// up to 5.13. The two-line record of <= 4.6 is matched after joining its lines (`DMAR:[fault reason`).
const DMA_FAULT =
  /^\[DMA (Read|Write)(?: (NO_PASID|PASID (?:0x)?([0-9a-fA-F]{1,8})))?\]\s*Request device \[(0x)?([0-9a-fA-F]{1,2}):(?:0x)?([0-9a-fA-F]{1,2})\.([0-7])\]\s*(?:PASID ([0-9a-fA-F]{1,8})\s+)?fault addr (0x)?([0-9a-fA-F]{1,16})\s*(DMAR:\s*)?\[fault reason (0x)?([0-9a-fA-F]{1,3})\]\s?(.*)$/;
const INTR_FAULT =
  /^(\[INTR-REMAP\]|INTR-REMAP:)\s*Request device \[(\[)?(0x)?([0-9a-fA-F]{1,2}):(?:0x)?([0-9a-fA-F]{1,2})\.([0-7])\]\s*fault index (0x)?([0-9a-fA-F]{1,16})\s*(?:INTR-REMAP:\s*)?\[fault reason (0x)?([0-9a-fA-F]{1,3})\]\s?(.*)$/;
const FAULT_START = /\[DMA (?:Read|Write)|\[INTR-REMAP\]|INTR-REMAP:/;
const FAULT_REASON_DONE = /\[fault reason (?:0x)?[0-9a-fA-F]{1,3}\]/;

export const FAULT_STATUS = /^DRHD: handling fault status reg ([0-9a-fA-F]{1,8})/;

/** FSTS (VT-d spec 11.4.9.1): PFO, PPF, AFO, APF, IQE, ICE, ITE, PRO in bits 0-7, FRI in 15:8. */
const FSTS_BITS: [string, number][] = [
  ['pfo', FSTS.PFO],
  ['ppf', FSTS.PPF],
  ['afo', FSTS.AFO],
  ['apf', FSTS.APF],
  ['iqe', FSTS.IQE],
  ['ice', FSTS.ICE],
  ['ite', FSTS.ITE],
  ['pro', FSTS.PRO],
];

export function decodeFaultStatus(text: string): Record<string, unknown> {
  const v = hexNumber(text) ?? 0;
  const out: Record<string, unknown> = { value: normalizeHex(text) };
  for (const [name, bit] of FSTS_BITS) out[name] = ((v >>> bit) & 1) === 1;
  out.fri = (v >>> 8) & 0xff;
  return out;
}

function parseReason(code: string, hex: boolean): { code: number; text: string } | null {
  const n = hex ? parseInt(code, 16) : /^\d+$/.test(code) ? parseInt(code, 10) : parseInt(code, 16);
  if (!(n >= 0 && n <= 0xff)) return null;
  return { code: n, text: linuxFaultReason(n).text };
}

/**
 * Keeps the reason text the kernel printed when it is not the one that kernel's table has for the code.
 * The formats before 5.4 come from kernels without the scalable-mode table, which print "Unknown" for
 * 0x30 and up; `reason.text` still names the code as today's table does.
 */
function notePrintedReason(e: LogEvent, printed: string, scalableModeTable: boolean): void {
  if (!e.reason) return;
  if (printed !== linuxFaultReason(e.reason.code, { scalableModeTable }).text) e.details.printedReason = printed;
}

class ReasonTail implements Continuation {
  done = false;

  constructor(private readonly event: LogEvent) {}

  absorb(msg: string, info: LineInfo): boolean {
    if (!absorbReasonTail(this.event, msg, info)) return false;
    if (this.event.details.printedReason === undefined) this.done = true;
    return true;
  }
}

/** A fault line of the Linux driver; `takeFaultStatus` gives the event the status line that came before it. */
export function kernelFault(msg: string, info: LineInfo, takeFaultStatus: (e: LogEvent) => void): ReadResult {
  const at = msg.search(FAULT_START);
  if (at === -1) return null;
  const text = msg.slice(at);
  const dma = DMA_FAULT.exec(text);
  if (dma) {
    const bracketPasid = dma[2];
    const hexBus = dma[4] !== undefined;
    const twoLine = dma[11] !== undefined;
    const hexReason = dma[12] !== undefined;
    const format = twoLine
      ? 'vtd-dma-two-line'
      : bracketPasid !== undefined
        ? hexBus ? 'vtd-dma-5.14' : 'vtd-dma-5.15'
        : dma[8] !== undefined ? 'vtd-dma-pasid-decimal' : 'vtd-dma-decimal';
    const e = base(info, 'dma-fault', format);
    e.access = dma[1] === 'Read' ? 'read' : 'write';
    e.device = bdfToDevice(dma[5]!, dma[6]!, dma[7]!);
    const pasidText = dma[3] ?? dma[8];
    if (pasidText !== undefined && pasidText.toLowerCase() !== 'ffffffff') e.pasid = parseInt(pasidText, 16);
    e.address = normalizeHex(dma[10]!);
    e.reason = parseReason(dma[13]!, hexReason);
    notePrintedReason(e, dma[14]!.trim(), format !== 'vtd-dma-two-line' && format !== 'vtd-dma-decimal');
    if (!hexReason) e.details.reasonPrintedInDecimal = true;
    takeFaultStatus(e);
    return { events: [e], more: new WalkDump(e) };
  }
  const intr = INTR_FAULT.exec(text);
  if (intr) {
    const oldStyle = intr[1] === 'INTR-REMAP:';
    const hexReason = intr[9] !== undefined;
    const format = oldStyle ? 'vtd-intr-two-line' : !hexReason ? 'vtd-intr-decimal' : intr[3] !== undefined ? 'vtd-intr-5.14' : 'vtd-intr-5.15';
    const e = base(info, 'interrupt-fault', format);
    e.device = bdfToDevice(intr[4]!, intr[5]!, intr[6]!);
    e.details.faultIndex = normalizeHex(intr[8]!);
    e.reason = parseReason(intr[10]!, hexReason);
    notePrintedReason(e, intr[11]!.trim(), true);
    if (!hexReason) e.details.reasonPrintedInDecimal = true;
    takeFaultStatus(e);
    return e.details.printedReason !== undefined ? { events: [e], more: new ReasonTail(e) } : events(e);
  }
  // Cut short until its reason is complete (a wrap may fall inside `[fault reason 0x05]`).
  return !FAULT_REASON_DONE.test(text) && text.length < MAX_JOINED ? 'partial' : null;
}
