import type { QueueDump } from './debugfs';
import { PageTableImport } from './debugfs-import-pages';

// The fourth phase of the import: the invalidation queue's descriptors and the interrupt remapping tables.

export class QueueImport extends PageTableImport {
  // ---- invalidation queue ----

  /**
   * The queue as `invalidation_queue` shows it: slot i at base + (i << qi_shift), 32-byte descriptors when the
   * unit is scalable-mode capable (ECAP.SMTS), whatever mode it runs in; head and tail as the file printed them.
   */
  protected loadQueue(q: QueueDump): void {
    const state = this.units.get(q.unit)!;
    this.at = q.at;
    const smts = state.registersKnown ? state.unit.ecap.smts === 1 : q.wide === true;
    if (q.wide !== undefined && q.wide !== smts) {
      this.note('warning', q.at, `${q.unit}: the queue rows have ${q.wide ? 4 : 2} descriptor words, but ECAP.SMTS is ${smts ? 1 : 0} (the kernel prints ${smts ? 4 : 2}); the descriptors are placed as ECAP says`);
    }
    const shift = smts ? 5 : 4;
    const status: number[] = new Array(256).fill(0);
    for (const r of q.rows) {
      this.at = r.at;
      if (r.index >= 256) {
        this.note('warning', r.at, `slot ${r.index} is beyond the 256 the driver allocates`);
        continue;
      }
      r.qwords.forEach((w, i) => this.put(q.base + r.index * 2 ** shift + i * 8, w, r.at, `invalidation descriptor ${r.index} qw${i}`));
      status[r.index] = r.status;
    }
    state.qiStatus = status;
    state.queue = { base: q.base, head: q.head, tail: q.tail, shift, at: q.at };
  }

  // ---- interrupt remapping ----

  protected loadInterrupts(): void {
    for (const dump of this.dump.interrupts) {
      if (dump.table === undefined) continue;
      for (const e of dump.entries) {
        this.at = e.at;
        if (e.index >= 65536) {
          this.note('warning', e.at, `IRTE ${e.index} is beyond the 65536 the driver allocates`);
          continue;
        }
        this.put(dump.table + e.index * 16, e.low, e.at, `IRTE ${e.index} low`);
        this.put(dump.table + e.index * 16 + 8, e.high, e.at, `IRTE ${e.index} high`);
      }
    }
  }
}
