import { agree, plural } from '../core/plural';
import { IQEI } from '../core/vtd/descriptors';
import { faultReason } from '../core/vtd/fault-reasons';
import { AMD_EVENT_TYPES } from './amd-log';
import type { LogEvent, LogSummary } from './log-event';
import { qemuErrorLines, qemuTraceNote, unrecordedFaultLine } from './log-explain-qemu';
import { readWalkDump } from './log-explain-walk';
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

/** Formats whose fault line says whether the request had a PASID (`NO_PASID`, `PASID ffffffff`, `pasid=0xffffffff`). */
const PRINTS_PASID = new Set(['vtd-dma-pasid-decimal', 'vtd-dma-5.14', 'vtd-dma-5.15']);

/** ` with PASID 3 (0x03)`, ` without a PASID` when the line says so, nothing when it does not say. */
function pasidText(e: LogEvent): string {
  if (e.pasid !== null) return ` with PASID ${e.pasid} (${hex2(e.pasid)})`;
  const says = PRINTS_PASID.has(e.format) || e.details.pasidPrinted === true || e.details.record !== undefined || e.details.descriptor !== undefined || e.format.startsWith('vtd-prq');
  return says ? ' without a PASID' : '';
}

/**
 * The era of a format in a few words (`Linux 5.15+`, `Linux 4.7-5.3`, `Linux <= 4.6`), from its VT-d
 * `since`/`until`; empty when the catalogue has none. The whole version note is for `--format json` and the
 * hover (LOG_FORMATS).
 */
export function formatEra(format: string): string {
  const f = LOG_FORMATS[format];
  if (!f || f.since === undefined) return '';
  if (f.since && f.until) return f.since === f.until ? `Linux ${f.since}` : `Linux ${f.since}-${f.until}`;
  if (f.since) return `Linux ${f.since}+`;
  return f.until ? `Linux <= ${f.until}` : '';
}

/** What the event is, without its lines: `Intel VT-d DMA fault on dmar0 at 12.345`, with `(format, era)` after the unit when `withFormat`. */
export function eventTitle(e: LogEvent, withFormat = true): string {
  const vendor = e.vendor ? VENDOR[e.vendor] : 'IOMMU';
  const era = formatEra(e.format);
  const fmt = withFormat ? ` (${e.format}${era ? `, ${era}` : ''})` : '';
  const at = e.timestamp ? ` at ${e.timestamp}` : '';
  const unit = e.iommu ? ` on ${e.iommu}` : '';
  // QEMU's fault-recording reports: what happened to a fault on its way to the guest.
  const kind = e.format === 'qemu-error' && e.kind === 'register' ? 'fault recording' : e.format === 'qemu-error' && e.kind === 'queue-overflow' ? 'fault recording overflow' : (KIND[e.kind] ?? e.kind);
  return `${vendor} ${kind}${unit}${fmt}${at}`;
}

function header(e: LogEvent): string {
  const lines = e.endLine > e.line ? `lines ${e.line}-${e.endLine}` : `line ${e.line}`;
  return `${lines}: ${eventTitle(e)}`;
}

/** FSTS (fault status) as the `DRHD: handling fault status reg` line prints it, in words. */
function faultStatusText(fs: Record<string, unknown>): string {
  const parts: string[] = [];
  if (fs.ppf) parts.push(`a primary fault is pending (PPF), the first in fault recording register ${String(fs.fri)} (FRI)`);
  if (fs.pfo) parts.push('the fault recording registers overflowed (PFO): later faults were not recorded');
  if (fs.apf) parts.push('an advanced fault is pending (APF)');
  if (fs.afo) parts.push('the advanced fault log overflowed (AFO)');
  if (fs.iqe) parts.push('an invalidation queue error (IQE)');
  if (fs.ice) parts.push('an invalidation completion error (ICE)');
  if (fs.ite) parts.push('an invalidation time-out (ITE)');
  if (fs.pro) parts.push('the page request queue overflowed (PRO)');
  return `fault status ${String(fs.value)}: ${parts.length ? parts.join('; ') : 'no fault bit set'}.`;
}

/** IQERCD.IQEI: why the invalidation queue stopped, and whether the descriptor at its head is the cause. */
const IQEI_TEXT: Record<number, { meaning: string; check: string }> = {
  [IQEI.NOT_AVAILABLE]: { meaning: 'no cause recorded (hardware before IQEI)', check: 'the QI HEAD descriptor is the one it rejected: check its type and reserved bits against what this IOMMU supports (ECAP).' },
  [IQEI.INVALID_TAIL]: { meaning: 'invalid tail pointer: the driver wrote IQT at or beyond the end of the queue (IQA.QS)', check: 'the descriptors are not the cause: check the queue size in IQA and the tail the driver wrote.' },
  [IQEI.FETCH_ERROR]: { meaning: 'descriptor fetch error: the IOMMU could not read the descriptor at the head', check: 'check the queue base in IQA: it points above the host address width or into a memory hole.' },
  [IQEI.INVALID_TYPE]: { meaning: 'invalid descriptor type', check: 'the QI HEAD descriptor is the one it rejected: this IOMMU does not support its type (ECAP).' },
  [IQEI.RESERVED_FIELD]: { meaning: 'a reserved field is set in a descriptor of a valid type', check: 'the QI HEAD descriptor is the one it rejected: check its reserved bits and its granularity and field values.' },
  [IQEI.INVALID_WIDTH]: { meaning: 'invalid descriptor width: 128-bit descriptors (IQA.DW = 0) in scalable mode', check: 'the descriptors are not the cause: scalable mode needs 256-bit descriptors (IQA.DW = 1).' },
  [IQEI.TAIL_MISALIGNED]: { meaning: 'queue tail misaligned: IQT bit 4 set with 256-bit descriptors', check: 'the descriptors are not the cause: check the tail the driver wrote.' },
  [IQEI.INVALID_TTM]: { meaning: 'invalid translation table mode (a reserved RTADDR.TTM)', check: 'the descriptors are not the cause: check RTADDR.TTM.' },
};

function intelLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  if (e.format === 'qemu-error') {
    qemuErrorLines(e, out);
    return;
  }
  if (e.kind === 'dma-fault' || e.kind === 'interrupt-fault') {
    faultLines(e, out);
    return;
  }
  if (e.kind === 'invalidation-error') {
    const error = d.error;
    if (error === 'ITE') out.push(`  what:  an ATS invalidation sent to ${who(e)} did not complete in time (ITE).`, '  next:  check the device\'s ATS support and link, and whether it was reset or removed while invalidations were pending.');
    else if (error === 'ICE') out.push(`  what:  an invalidation completion from ${who(e)} was invalid (ICE, for example a wrong ITag).`, '  next:  check the device\'s ATS implementation.');
    else {
      // `Reason %llx` (qi_dump_fault, 5.13+) prints IQERCD.IQEI; older kernels print no cause.
      const iqei = e.format === 'vtd-qi-5.13' && e.reason ? e.reason.code : null;
      const cause = iqei !== null ? IQEI_TEXT[iqei] : undefined;
      if (iqei !== null) out.push(`  what:  the IOMMU stopped its invalidation queue (IQE): IQEI ${iqei}, ${cause ? cause.meaning : 'a cause the VT-d specification does not define'}.`);
      else out.push('  what:  the IOMMU rejected a descriptor in the invalidation queue (IQE); this kernel does not print the cause (IQEI).');
      out.push(`  next:  ${cause ? cause.check : 'the QI HEAD descriptor is the one it rejected: check its type and reserved bits against what this IOMMU supports (ECAP).'}`);
    }
    const head = d.head as { name: string; qw0: string; qw1: string } | undefined;
    if (head) out.push(`  head:  ${head.name} qw0=${head.qw0} qw1=${head.qw1}`);
    return;
  }
  if (e.kind === 'page-request') {
    pageRequestLines(e, out);
    return;
  }
  if (e.kind === 'driver-error') {
    out.push(`  what:  the driver went to map IOVA page ${String(d.vpfn)} (PTE ${String(d.requested)}) and found the entry already set to ${String(d.existing)}; the old mapping stays, and the map still returned success.`);
    out.push('  next:  look for a second map of the same IOVA without an unmap in between (the caller\'s bug), or a 4 KiB map inside an existing superpage; the kernel WARNs right after this line, and its stack names the caller.');
    return;
  }
  if (e.kind === 'queue-overflow') {
    out.push(d.cleared ? '  what:  the driver cleared the page request overflow (PRO) after handling the queue.' : '  what:  the page request queue overflowed (PRO): the IOMMU could not queue some page requests, so the driver never saw them.');
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
  if (e.kind === 'page-walk') {
    const reading = readWalkDump(d.walk, null, null, null);
    if (reading?.finding) out.push(`  what:  a table walk dump with no fault line before it: ${reading.finding}`);
    walkLines(e, reading?.text ?? null, out);
  }
}

/** A DMA or interrupt-remapping fault of the kernel, Xen or a QEMU trace. */
function faultLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  if (e.kind === 'interrupt-fault') out.push(`  what:  ${who(e)} sent an interrupt${d.faultIndex ? ` (remapping table index ${String(d.faultIndex)})` : ''} and interrupt remapping blocked it.`);
  else if (!e.device && !e.address && e.reason) out.push('  what:  a DMA request was blocked; only the line with the reason was printed (the line naming the device and address is missing).');
  else out.push(`  what:  ${who(e)} tried to ${verb(e)} ${e.address ?? 'an address'}${pasidText(e)}, and the IOMMU blocked it.`);
  const reading = e.kind === 'dma-fault' ? readWalkDump(d.walk, e.address, e.access, e.reason?.code ?? null) : null;
  if (e.reason) {
    const r = faultReason(e.reason.code);
    // The dump printed with the fault says more than the reason's general meaning: where the walk stopped, or what the leaf allows.
    const meaning = reading?.finding ? ` ${capitalise(reading.finding)}` : r ? `: ${r.meaning}` : ': the VT-d fault reasons have no entry for this code.';
    out.push(`  why:   fault reason ${hex2(e.reason.code)} "${e.reason.text}"${reading?.finding ? '.' : ''}${meaning}`);
    const check = reading?.finding ? (reading.check ?? r?.check) : r?.check;
    if (check) out.push(`  next:  ${check}`);
    if (d.reasonPrintedInDecimal) out.push(`  note:  this kernel printed the reason in decimal (${e.reason.code}); the VT-d specification numbers it ${hex2(e.reason.code)}.`);
  } else if (Array.isArray(d.problems)) out.push(`  why:   the fault reason it prints cannot be used: ${(d.problems as string[]).join('; ')}.`);
  else out.push('  why:   the line with the fault reason is missing.');
  if (e.format.startsWith('vtd-')) out.push('  note:  VT-d fault lines do not print the PCI segment; segment 0000 is assumed.');
  if (d.faultStatus) out.push(`  note:  ${faultStatusText(d.faultStatus as Record<string, unknown>)}`);
  if (e.format === 'qemu-trace') out.push(qemuTraceNote(e));
  walkLines(e, reading?.text ?? null, out);
}

const capitalise = (s: string) => s.charAt(0).toUpperCase() + s.slice(1);

/** Why the driver rejected a page request, per the problem it printed (prq.c, svm.c before 6.12), and what to check. */
const PRQ_PROBLEMS: Record<string, { why: string; check: string }> = {
  'Page request without PASID': {
    why: 'the request carries no PASID, and this driver serves page requests only for PASIDs (up to 6.12)',
    check: 'the device asked for a page for DMA without a PASID: map the buffer before the device uses it; with these kernels a device must not rely on PRI for requests without a PASID.',
  },
  'Address is not canonical': {
    why: 'the address is not canonical (its upper bits do not repeat bit 47, or 56 with 5-level paging), so it cannot be a CPU virtual address',
    check: 'check the address the device was given: a truncated or corrupted pointer looks like this.',
  },
  'Page request in Privilege Mode': {
    why: 'the request asks for supervisor (privileged) access, and the driver serves only user-mode page requests (SVA binds user address spaces)',
    check: 'check why the device sets Privileged Mode in its requests: its driver may run it in supervisor mode, which SVA does not support.',
  },
  'Execution request not supported': {
    why: 'the request asks for execute permission along with read, and the driver does not serve execute requests',
    check: 'check why the device asks for execute permission on this page.',
  },
  'Page request for invalid PASID': {
    why: 'no address space is bound to the PASID (no SVA bind)',
    check: 'check that the PASID was bound (SVA) before the device used it and not unbound while it was in use.',
  },
};

function pageRequestLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  const desc = d.descriptor as { read?: boolean; write?: boolean; exec?: boolean; priv?: boolean; lastInGroup?: boolean; prgIndex?: number; privateDataPresent?: boolean } | undefined;
  const perms = desc ? [desc.read && 'read', desc.write && 'write', desc.exec && 'execute'].filter(Boolean).join('/') : '';
  const asked = desc ? `${desc.priv ? 'supervisor ' : ''}${perms || 'no'} access to` : 'a page at';
  const problem = d.problem ? PRQ_PROBLEMS[String(d.problem)] : undefined;
  const subject = e.device || e.address ? `${who(e)} asked (PRI) for ${asked} ${e.address ?? 'an address'}${pasidText(e)}` : 'a device asked for a page (PRI); the line names no device, PASID or address,';
  if (problem) out.push(`  what:  ${subject} and the driver rejected it: ${problem.why}.`);
  // `Invalid page request` with no problem line before it: the driver found no device for the requester ID
  // (device_rbtree_find in 6.12; in 6.1 also when reporting the fault to its handler failed).
  else out.push(`  what:  ${subject} and the driver rejected it without naming a problem: in 6.12 that means it knows no device with this requester ID; in 6.1 also that no fault handler took it.`);
  // handle_bad_prq_event answers only the last request of a group (6.1: also one with private data).
  const answer = !desc ? 'the driver answers the page group with Invalid Request when this was the last request of its group' : desc.lastInGroup || desc.privateDataPresent ? `the driver answered the page group${desc.prgIndex !== undefined ? ` (index ${desc.prgIndex})` : ''} with Invalid Request` : 'no answer was sent: the request was not the last of its page group';
  out.push(`  next:  ${answer}; ${problem ? problem.check : 'check that the device is probed and attached to a domain that handles page requests.'}`);
}

function walkLines(e: LogEvent, text: string | null, out: string[]): void {
  const walk = e.details.walk as { pasidEntry?: Record<string, unknown> } | undefined;
  if (!walk || text === null) return;
  out.push(`  walk:  ${text}`);
  if (walk.pasidEntry) out.push(`  pasid: ${String(walk.pasidEntry.translation)} translation, DID ${String(walk.pasidEntry.did ?? '?')}, ${walk.pasidEntry.present ? 'present' : 'not present'}`);
}

function amdLines(e: LogEvent, out: string[]): void {
  const d = e.details;
  const name = e.reason?.text ?? String(d.eventName ?? (d.error ? '' : 'event'));
  const type = AMD_EVENT_TYPES[name];
  const flags = d.flagBits as Record<string, boolean> | undefined;
  if (e.kind === 'dma-fault' || e.kind === 'interrupt-fault') {
    const target = e.kind === 'interrupt-fault' ? `send an interrupt to ${e.address ?? 'an address'}` : `${verb(e)} ${e.address ?? 'an address'}`;
    out.push(`  what:  ${who(e)} tried to ${target}${d.domain !== undefined ? ` in domain ${hex2(Number(d.domain))}` : ''}${e.pasid !== null ? ` with PASID ${e.pasid}` : ''}, and the IOMMU blocked it (${name}).`);
    if (flags && flags.i) {
      // An interrupt request (I): no page of an I/O page table is involved.
      out.push(`  why:   flags ${String(d.flags)}: an interrupt request (I), not a memory access: the device table entry's interrupt settings or the interrupt remapping table refused it.`);
      out.push('  next:  Check the DTE\'s interrupt fields (IV, IntCtl, the interrupt table root and length) and the IRTE at the MSI\'s index.');
      return;
    }
    if (flags) {
      const why = [
        flags.pr ? 'the page was present but did not allow this access' : 'the page was not present (no mapping)',
        flags.tr ? 'it was an ATS translation request' : null,
        flags.rz ? 'a page-table entry had reserved bits set' : null,
        flags.us ? 'it was a user-mode request' : null,
        flags.gn ? 'it was a guest (PASID) request' : null,
      ].filter(Boolean);
      out.push(`  why:   flags ${String(d.flags)}: ${why.join('; ')}.`);
      // The flags say more than the event type's general meaning; its check still fits.
      if (type) out.push(`  next:  ${type.check}`);
      return;
    }
  } else if (e.format === 'amd-completion-wait') {
    out.push(`  what:  the driver's COMPLETION_WAIT command did not complete${e.iommu ? ` on ${e.iommu}` : ''}: the IOMMU did not finish its command buffer in time (it may be hung or stuck on an invalidation).`);
    out.push('  next:  look for IOTLB_INV_TIMEOUT or ILLEGAL_COMMAND_ERROR events just before.');
    return;
  } else if (e.format === 'amd-no-event') {
    // iommu_print_event retries an entry of type 0 for LOOP_TIMEOUT microseconds (AMD erratum 732), then prints this.
    out.push('  what:  the driver read an event-log entry that was still empty (type 0, AMD erratum 732), waited for the IOMMU to write it, and gave up: that event is lost.');
    return;
  } else if ((name === 'UNKNOWN' || name === 'event') && Array.isArray(d.event)) {
    out.push(`  what:  an event of type ${String(d.type ?? '?')}, which the driver has no name for; its words: ${(d.event as string[]).join(' ')}.`);
    return;
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
  if (type) out.push(`  why:   ${type.meaning.replace(/\.$/, '')}${d.stage ? `. Stage ${String(d.stage)}` : ''}${d.class ? `, ${String(d.class)}` : ''}.`, `  next:  ${type.check}`);
  if (d.stall) out.push('  note:  the transaction is stalled until software resumes or terminates it.');
}

/**
 * `<function>: N callbacks suppressed` (lib/ratelimit.c) counts the calls its rate limit (10 per 5 s,
 * DEFAULT_RATELIMIT_BURST per DEFAULT_RATELIMIT_INTERVAL) refused since the last message; what one call is
 * depends on the function.
 */
function ratelimitText(e: LogEvent): string {
  const fn = String(e.details.function);
  const n = Number(e.details.suppressed);
  if (fn === 'dmar_fault') return `dmar_fault's rate limit skipped ${plural(n, 'message')}: each a \`DRHD: handling fault status\` line or a fault record it cleared without printing, so more faults happened than the log shows.`;
  if (fn === 'amd_iommu_report_page_fault') return `amd_iommu_report_page_fault's rate limit skipped ${plural(n, 'IO_PAGE_FAULT message')}: more page faults happened than the log shows.`;
  if (fn === 'arm_smmu_evtq_thread' || fn === 'arm_smmu_dump_event') return `arm_smmu_evtq_thread's rate limit skipped the dump of ${plural(n, 'event')} no handler took: more events happened than the log shows.`;
  return `${plural(n, 'message')} from ${fn} were dropped by rate limiting: there were more events than the log shows.`;
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
  // A fault QEMU did not record never reaches the guest: one line, as for a trace event.
  if (e.format === 'qemu-trace' && e.kind === 'dma-fault' && e.details.recorded === false) return [unrecordedFaultLine(e)];
  if (TRACE_KINDS.has(e.kind) && e.format !== 'qemu-error') return [traceLine(e)];
  const out = [header(e)];
  if (e.kind === 'ratelimit') {
    out.push(`  what:  ${ratelimitText(e)}`);
    return out;
  }
  if (e.vendor === 'intel') intelLines(e, out);
  else if (e.vendor === 'amd') amdLines(e, out);
  else if (e.vendor === 'arm') armLines(e, out);
  else if (e.format === 'iommu-iopf-aborted') {
    // io-pgfault.c prints it when a fault-capable domain is attached at the PASID but the group could not be allocated or its handler failed.
    out.push(`  what:  ${who(e)} raised a recoverable fault (page request)${pasidText(e)}: the domain attached there has a fault handler, but it failed the page group (or the group could not be allocated).`);
    out.push('  next:  the group was answered with Response Failure, after which a PCIe device stops sending page requests; check the handler of that domain (the SVA bind or the iommufd fault queue) for its error.');
  } else if (e.format === 'ftrace-iommu' && e.kind === 'dma-fault') {
    out.push(`  what:  the IOMMU driver reported a translation fault of ${who(e)} at ${e.address ?? 'an address'}${e.access ? ` (a ${e.access})` : ''} to the IOMMU core (report_iommu_fault, the io_page_fault tracepoint).`);
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
