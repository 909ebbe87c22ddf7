import type { VtdUnit } from '../vtd/unit';
import { qword } from './debugfs-translation';
import { QI_LENGTH } from './qi';

// ---------------------------------------------------------------------------------------------------------
// invalidation_queue
// ---------------------------------------------------------------------------------------------------------

export function queueTitle(unit: string): string {
  return `Invalidation queue on IOMMU: ${unit}`;
}

export function queueGeometry(base: number, head: number, tail: number): string {
  return ` Base: 0x${base.toString(16)}\tHead: ${head}\tTail: ${tail}`;
}

export const QUEUE_HEADER_WIDE = 'Index\t\tqw0\t\t\tqw1\t\t\tqw2\t\t\tqw3\t\t\tstatus';
export const QUEUE_HEADER_NARROW = 'Index\t\tqw0\t\t\tqw1\t\t\tstatus';

export function queueRow(index: number, qwords: readonly string[], status: number): string {
  return `${String(index).padStart(5)}\t${qwords.join('\t')}\t${status.toString(16).padStart(16, '0')}`;
}

/** What the driver keeps beside the hardware queue: the status word of each slot (`qi->desc_status`). */
export type QueueStatus = (index: number) => number;

/**
 * Head and tail as an `invalidation_queue` file showed them. The kernel prints IQH and IQT as it reads them,
 * so a dump whose files were read one after another can show other values there than in `iommu_regset`.
 */
export interface QueuePointers {
  readonly head: number;
  readonly tail: number;
}

/** `qi_shift()`: descriptors are 32 bytes when the unit is scalable-mode capable (ECAP.SMTS), in any mode. */
export function descriptorShift(unit: VtdUnit): 4 | 5 {
  return unit.ecap.smts === 1 ? 5 : 4;
}

export function renderInvalidationQueue(units: readonly { readonly unit: VtdUnit; readonly qiStatus?: QueueStatus; readonly qiPointers?: QueuePointers }[]): string {
  let out = '';
  for (const { unit, qiStatus, qiPointers } of units) {
    if (!qiStatus || !unit.ecap.qi) continue;
    const shift = descriptorShift(unit);
    const wide = shift === 5;
    const size = 1 << shift;
    const iqa = unit.readRegister('IQA');
    const base = iqa.hi * 0x1_0000_0000 + ((iqa.lo & 0xffff_f000) >>> 0);
    // `dmar_readq(IQH) >> shift`: the whole register, so bits above the queue's index show as they are.
    const pointer = (name: 'IQH' | 'IQT') => {
      const r = unit.readRegister(name);
      return Math.floor((r.hi * 0x1_0000_0000 + r.lo) / size);
    };
    out += queueTitle(unit.name) + '\n';
    out += queueGeometry(base, qiPointers?.head ?? pointer('IQH'), qiPointers?.tail ?? pointer('IQT')) + '\n';
    out += (wide ? QUEUE_HEADER_WIDE : QUEUE_HEADER_NARROW) + '\n';
    for (let i = 0; i < QI_LENGTH; i++) {
      const at = base + i * size;
      const qwords = [qword(unit.memory, at), qword(unit.memory, at + 8)];
      if (wide) qwords.push(qword(unit.memory, at + 16), qword(unit.memory, at + 24));
      out += queueRow(i, qwords, qiStatus(i)) + '\n';
    }
    out += '\n';
  }
  return out;
}
