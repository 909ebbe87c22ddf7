import { newEvent } from './log-event';
import { type LineInfo, type LineReader, type ReadResult, events } from './log-reader';

const SUPPRESSED = /^([\w.]{1,64}): (\d{1,10}) callbacks suppressed/;

/** `<function>: N callbacks suppressed`, when the function belongs to an IOMMU driver. */
export function createRatelimitReader(onSuppressed: (count: number) => void): LineReader {
  return {
    read(msg: string, info: LineInfo): ReadResult {
      if (msg.indexOf('callbacks suppressed') === -1) return null;
      const m = SUPPRESSED.exec(msg);
      if (!m) return null;
      const fn = m[1]!;
      const vendor = /dmar|intel_iommu|qi_|prq/.test(fn) ? 'intel' : /amd_iommu|iommu_print_event/.test(fn) ? 'amd' : /smmu/.test(fn) ? 'arm' : /iommu/.test(fn) ? null : undefined;
      if (vendor === undefined) return null;
      const count = Number(m[2]);
      onSuppressed(count);
      const e = newEvent(info.lineNo, vendor, 'ratelimit', 'kernel-ratelimit');
      e.timestamp = info.timestamp;
      e.details.function = fn;
      e.details.suppressed = count;
      return events(e);
    },
  };
}
