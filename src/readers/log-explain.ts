import { agree, plural } from '../core/plural';
import { faultReason } from '../core/vtd/fault-reasons';
import { AMD_EVENT_TYPES } from './amd-log';
import type { LogEvent, LogSummary } from './log-event';
import { LOG_FORMATS } from './log-formats';
import { SMMU_EVENTS } from './smmu-log';

/**
 * Plain-words text for a decoded event: what the device tried, why the IOMMU refused, what to check next.
 * Trace events (the normal life of an IOMMU rather than its errors) get one line each.
 */

const VENDOR: Record<string, string> = { intel: 'Intel VT-d', amd: 'AMD-Vi', arm: 'Arm SMMUv3' };

const KIND: Record<string, string> = {
  'dma-fault': 'DMA fault',
  'interrupt-fault': 'interrupt-remapping fault',
  'page-request': 'page request',
  'invalidation-error': 'invalidation error',
  capability: 'unit capabilities',
  'config-error': 'configuration error',
  'hardware-error': 'hardware error',
  'queue-overflow': 'queue overflow',
  ratelimit: 'rate limiting',
  'page-walk': 'table walk dump',
  'driver-error': 'driver error',
};

const TRACE_KINDS = new Set(['invalidation', 'translation', 'map', 'unmap', 'attach', 'cache-tag', 'interrupt', 'register', 'trace']);

const hex2 = (n: number) => '0x' + n.toString(16).padStart(2, '0');

function verb(e: LogEvent): string {
  return e.access === 'write' ? 'write to' : e.access === 'exec' ? 'execute from' : e.access === 'read' ? 'read' : 'access';
}

function who(e: LogEvent): string {
  if (e.device) return `device ${e.device}`;
  if (typeof e.details.client === 'string') return `client ${e.details.client}`;
  if (typeof e.details.sid === 'number') return `stream ${hex2(e.details.sid)}`;
  return 'a device';
}

function pasidText(e: LogEvent): string {
  return e.pasid === null ? ' without a PASID' : ` with PASID ${e.pasid} (${hex2(e.pasid)})`;
}

function header(e: LogEvent): string {
  const lines = e.endLine > e.line ? `lines ${e.line}-${e.endLine}` : `line ${e.line}`;
  const vendor = e.vendor ? VENDOR[e.vendor] : 'IOMMU';
  const fmt = LOG_FORMATS[e.format];
  const era = fmt ? `${e.format}: ${fmt.versions}` : e.format;
  const at = e.timestamp ? ` at ${e.timestamp}` : '';
  const unit = e.iommu ? ` on ${e.iommu}` : '';
  return `${lines}: ${vendor} ${KIND[e.kind] ?? e.kind}${unit} (${era})${at}`;
}

function intelLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  if (e.kind === 'dma-fault' || e.kind === 'interrupt-fault') {
    if (e.kind === 'interrupt-fault') out.push(`  what:  ${who(e)} sent an interrupt${d.faultIndex ? ` (remapping table index ${String(d.faultIndex)})` : ''} and interrupt remapping blocked it.`);
    else out.push(`  what:  ${who(e)} tried to ${verb(e)} ${e.address ?? 'an address'}${pasidText(e)}, and the IOMMU blocked it.`);
    if (e.reason) {
      const r = faultReason(e.reason.code);
      out.push(`  why:   fault reason ${hex2(e.reason.code)} "${e.reason.text}"${r ? `: ${r.meaning}` : '.'}`);
      if (r) out.push(`  next:  ${r.check}`);
      if (d.reasonPrintedInDecimal) out.push(`  note:  this kernel printed the reason in decimal (${e.reason.code}); the VT-d specification numbers it ${hex2(e.reason.code)}.`);
    } else out.push('  why:   the line with the fault reason is missing.');
    if (e.format.startsWith('vtd-')) out.push('  note:  VT-d fault lines do not print the PCI segment; segment 0000 is assumed.');
    if (d.faultStatus) {
      const fs = d.faultStatus as Record<string, unknown>;
      out.push(`  note:  fault status ${String(fs.value)}${fs.pfo ? ': fault overflow, some faults were not recorded' : ''}.`);
    }
    if (e.format === 'qemu-trace' || e.format === 'qemu-error') out.push('  note:  reported by QEMU\'s emulated IOMMU (the guest sees this fault).');
    walkLines(e, out);
    return;
  }
  if (e.kind === 'invalidation-error') {
    const error = d.error;
    if (error === 'ITE') out.push(`  what:  an ATS invalidation sent to ${who(e)} did not complete in time (ITE).`, '  next:  check the device\'s ATS support and link, and whether it was reset or removed while invalidations were pending.');
    else if (error === 'ICE') out.push(`  what:  an invalidation completion from ${who(e)} was invalid (ICE, for example a wrong ITag).`, '  next:  check the device\'s ATS implementation.');
    else {
      out.push(`  what:  the IOMMU rejected a descriptor in the invalidation queue (IQE${e.reason && e.reason.code ? `, IQEI ${hex2(e.reason.code)}` : ''}).`);
      out.push('  next:  the QI HEAD descriptor is the one it rejected: check its type and reserved bits against what this IOMMU supports (ECAP).');
    }
    const head = d.head as { name: string; qw0: string; qw1: string } | undefined;
    if (head) out.push(`  head:  ${head.name} qw0=${head.qw0} qw1=${head.qw1}`);
    return;
  }
  if (e.kind === 'page-request') {
    const problem = d.problem ? String(d.problem) : 'rejected page request';
    out.push(`  what:  ${who(e)} requested the page at ${e.address ?? 'an unknown address'}${pasidText(e)} (PRI), and the driver answered: ${problem}.`);
    out.push('  next:  the device will see an Invalid Request response; check the PASID binding (SVA) and the permissions the device asked for.');
    return;
  }
  if (e.kind === 'driver-error') {
    out.push(`  what:  the driver went to map IOVA page ${String(d.vpfn)} (PTE ${String(d.requested)}) and found the entry already set to ${String(d.existing)}; the old mapping stays, and the map still returned success.`);
    out.push('  next:  look for a second map of the same IOVA without an unmap in between (the caller\'s bug), or a 4 KiB map inside an existing superpage; the kernel WARNs right after this line, and its stack names the caller.');
    return;
  }
  if (e.kind === 'queue-overflow') {
    out.push(d.cleared ? '  what:  the page request queue overflow was cleared.' : '  what:  the page request queue overflowed: the IOMMU dropped page requests, and devices waiting for them will time out.');
    return;
  }
  if (e.kind === 'capability') {
    const sm = d.summary as Record<string, unknown>;
    out.push(
      `  what:  version ${String(d.version)}, ${sm.scalableMode ? 'scalable mode' : 'legacy mode only'}, ${String(sm.domains)} domain IDs, ${String(sm.maxGuestAddressWidth)}-bit guest addresses, ` +
        `${sm.pasidBits ? `${String(sm.pasidBits)}-bit PASIDs` : 'no PASID'}, caching mode ${sm.cachingMode ? 'on (virtual IOMMU)' : 'off'}.`,
    );
    const yes = (k: string, label: string) => (sm[k] ? label : null);
    const features = [yes('firstLevel', 'first-level'), yes('secondLevel', 'second-level'), yes('nested', 'nested'), yes('passThrough', 'pass-through'), yes('queuedInvalidation', 'queued invalidation'), yes('deviceTlb', 'device TLB (ATS)'), yes('pageRequests', 'page requests'), yes('interruptRemapping', 'interrupt remapping')].filter(Boolean);
    out.push(`  has:   ${features.join(', ') || 'none of the optional features'}.`);
    return;
  }
  if (e.kind === 'page-walk') walkLines(e, out);
}

function walkLines(e: LogEvent, out: string[]): void {
  const walk = e.details.walk as { iommu?: string; steps?: Record<string, unknown>[]; entries?: string[]; pasidEntry?: Record<string, unknown> } | undefined;
  if (!walk) return;
  if (walk.entries) {
    out.push(`  walk:  ${walk.entries.join(' | ')}`);
    return;
  }
  const steps = (walk.steps ?? []).map((s) => {
    if (s.present === false) return `${String(s.entry)} not present${s.level !== undefined ? ` (level ${String(s.level)})` : ''}`;
    if (s.entry === 'pte') return `level ${String(s.level)} ${String(s.value)}`;
    if (s.hi !== undefined) return `${String(s.entry)} hi ${String(s.hi)} low ${String(s.low)}`;
    if (s.index !== undefined) return s.index === 0 ? `pasid entry ${String(s.value)}` : '';
    return `${String(s.entry)} ${String(s.value ?? s.low)}`;
  });
  out.push(`  walk:  ${steps.filter(Boolean).join(' -> ')}`);
  if (walk.pasidEntry) out.push(`  pasid: ${String(walk.pasidEntry.translation)} translation, DID ${String(walk.pasidEntry.did ?? '?')}, present ${String(walk.pasidEntry.present)}`);
}

function amdLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  const name = e.reason?.text ?? String(d.eventName ?? 'event');
  const type = AMD_EVENT_TYPES[name];
  const flags = d.flagBits as Record<string, boolean> | undefined;
  if (e.kind === 'dma-fault' || e.kind === 'interrupt-fault') {
    const target = e.kind === 'interrupt-fault' ? `send an interrupt to ${e.address ?? 'an address'}` : `${verb(e)} ${e.address ?? 'an address'}`;
    out.push(`  what:  ${who(e)} tried to ${target}${d.domain !== undefined ? ` in domain ${hex2(Number(d.domain))}` : ''}${e.pasid !== null ? ` with PASID ${e.pasid}` : ''}, and the IOMMU blocked it (${name}).`);
    if (flags) {
      const why = [
        flags.pr ? 'the page was present but did not allow this access' : 'the page was not present (no mapping)',
        flags.tr ? 'it was an ATS translation request' : null,
        flags.rz ? 'a page-table entry had reserved bits set' : null,
        flags.us ? 'it was a user-mode request' : null,
        flags.gn ? 'it was a guest (PASID) request' : null,
      ].filter(Boolean);
      out.push(`  why:   flags ${String(d.flags)}: ${why.join('; ')}.`);
    }
  } else {
    out.push(`  what:  ${name}${e.device ? ` for ${e.device}` : ''}${e.address ? ` at ${e.address}` : ''}${d.message ? ` (${String(d.message)})` : ''}.`);
  }
  if (type) out.push(`  why:   ${type.meaning}`, `  next:  ${type.check}`);
  else if (d.error === 'completion-wait timeout') out.push('  why:   the IOMMU did not finish its command buffer in time (it may be hung or stuck on an invalidation).', '  next:  look for IOTLB_INV_TIMEOUT or ILLEGAL_COMMAND_ERROR events just before.');
  if (d.dte) {
    const dte = d.dte as Record<string, unknown>;
    out.push(`  dte:   V=${Number(dte.v)} TV=${Number(dte.tv)} mode ${String(dte.mode)} root ${String(dte.pageTableRoot)} domain ${String(dte.domainId)} IR=${Number(dte.ir)} IW=${Number(dte.iw)}`);
  }
}

function armLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  const type = e.reason ? SMMU_EVENTS[e.reason.code] : undefined;
  if (e.kind === 'queue-overflow') {
    out.push(`  what:  the SMMU ${String(d.queue)} queue overflowed: records were lost, so there were more events than the log shows.`);
    return;
  }
  if (e.format === 'smmu-gerror' || e.format === 'smmu-cmdq-error' || e.format === 'smmu-cmd-sync-timeout') {
    out.push(`  what:  ${String(d.error ?? `global error ${String(d.gerror)}`)}${d.notes ? ` (${(d.notes as string[]).join('; ')})` : ''}.`);
    return;
  }
  const addr = e.address ? ` ${verb(e)} ${e.address}` : '';
  out.push(`  what:  ${who(e)}${addr ? ` tried to${addr}` : ' was refused'}${e.pasid !== null ? ` with substream (PASID) ${e.pasid}` : ''}${e.reason ? ` (${e.reason.text})` : ''}.`);
  if (type) out.push(`  why:   ${type.meaning}${d.stage ? ` Stage ${String(d.stage)}` : ''}${d.class ? `, ${String(d.class)}` : ''}.`, `  next:  ${type.check}`);
  if (d.stall) out.push('  note:  the transaction is stalled until software resumes or terminates it.');
}

function traceLine(e: LogEvent): string {
  const d = e.details;
  const bits = [
    d.event ? String(d.event) : e.kind,
    e.iommu,
    e.device,
    e.pasid !== null ? `pasid ${e.pasid}` : null,
    e.address ? `addr ${e.address}` : null,
    d.descriptor && typeof (d.descriptor as { traceName?: string }).traceName === 'string' ? `${(d.descriptor as { traceName: string }).traceName} ${(d.descriptor as { granularity: string }).granularity}`.trim() : null,
    d.text && !d.descriptor ? String(d.text) : null,
  ].filter(Boolean);
  return `line ${e.line}: ${e.vendor ? VENDOR[e.vendor] : 'IOMMU'} ${e.kind}: ${bits.join(' ')}`;
}

export function explainEvent(e: LogEvent): string[] {
  if (TRACE_KINDS.has(e.kind)) return [traceLine(e)];
  const out = [header(e)];
  if (e.kind === 'ratelimit') {
    out.push(`  what:  ${String(e.details.suppressed)} messages from ${String(e.details.function)} were dropped by rate limiting: there were more events than the log shows.`);
    return out;
  }
  if (e.vendor === 'intel') intelLines(e, out);
  else if (e.vendor === 'amd') amdLines(e, out);
  else if (e.vendor === 'arm') armLines(e, out);
  else if (e.kind === 'page-request' && e.details.problem) {
    out.push(`  what:  ${who(e)} raised a recoverable fault (page request)${pasidText(e)}: ${String(e.details.problem)}.`);
    out.push('  next:  the domain at that PASID has no fault handler (no SVA bind, no iommufd fault queue), or the handler refused it; the device gets a failure response and stops page requests.');
  } else out.push(`  what:  ${who(e)} ${e.kind}${e.address ? ` at ${e.address}` : ''}.`);
  return out;
}

export function describeSummary(s: LogSummary): string[] {
  const n = plural;
  const out = [
    `${n(s.lines, 'line')}: ${n(s.events, 'event')}, ${n(s.unrecognisedLines, 'line')} not recognised` +
      (s.unrecognisedIommuLines > 0 ? ` (${s.unrecognisedIommuLines} of them ${agree(s.unrecognisedIommuLines, 'mentions', 'mention')} an IOMMU)` : '') +
      (s.informationalLines > 0 ? `, ${s.informationalLines} informational` : '') +
      (s.suppressedMessages > 0 ? `, ${n(s.suppressedMessages, 'message')} suppressed by rate limiting` : '') +
      '.',
  ];
  const kinds = Object.entries(s.byKind).map(([k, n]) => `${n} ${k}`);
  if (kinds.length > 0) out.push(`events: ${kinds.join(', ')}`);
  for (const sample of s.unrecognisedSamples) out.push(`not recognised, line ${sample.line}: ${sample.text}`);
  if (s.internalErrors > 0) out.push(`${n(s.internalErrors, 'line')} hit an internal error in the decoder (please report).`);
  return out;
}
