import type { VtdUnit } from '../vtd/unit';
import { regsetTitle } from './debugfs-regset';

// ---------------------------------------------------------------------------------------------------------
// dmar_perf_latency (CONFIG_DMAR_PERF)
// ---------------------------------------------------------------------------------------------------------

/** perf.c's `latency_counter_names`, concatenated: the column header `dmar_latency_snapshot` always prints. */
export const LATENCY_HEADER = [
  '                  <0.1us', '   0.1us-1us', '    1us-10us', '  10us-100us', '   100us-1ms', '    1ms-10ms', '      >=10ms', '     min(us)', '     max(us)', ' average(us)',
].join('');

/**
 * `latency_show`: the unit's title, then the statistics of each latency type counting has been enabled for
 * (by writing 1-3 to the file). The model counts none, so each unit shows its title and the column header.
 */
export function renderPerfLatency(units: readonly VtdUnit[]): string {
  let out = '';
  for (const unit of units) out += regsetTitle(unit.name, unit.regBase) + '\n' + LATENCY_HEADER + '\n';
  return out;
}
