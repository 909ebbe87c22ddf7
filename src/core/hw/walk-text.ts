import { plural } from '../plural';
import type { DmaRequest, InterruptRequest, InterruptResult, TranslationResult, WalkStep } from './types';

/**
 * A walk trace in plain text, step by step, for terminals and output channels: which structure was read,
 * where, its raw words (labelled, in the order the kernel prints them), the fields that are set, and what
 * the hardware concluded. The webview panels draw the same WalkStep list; this is its text form.
 */

/** `4 KiB`, `2 MiB`, `1 GiB`. */
export function sizeName(size: number): string {
  return size >= 0x4000_0000 ? `${size / 0x4000_0000} GiB` : size >= 0x10_0000 ? `${size / 0x10_0000} MiB` : `${size / 1024} KiB`;
}

/** Fields worth reading: flags that are set and non-zero values (a cleared entry shows as `(all zero)`). */
function fieldsText(fields: WalkStep['fields']): string {
  const parts: string[] = [];
  for (const [name, v] of Object.entries(fields)) {
    if (v === false || v === 0 || v === '0x0') continue;
    parts.push(v === true ? name : `${name}=${typeof v === 'number' && v > 9 ? '0x' + v.toString(16) : v}`);
  }
  return parts.length ? parts.join(' ') : '(all zero)';
}

/**
 * An entry's words as the kernel prints them: a 128-bit entry high word first and labelled, as the DMAR_DEBUG
 * dump (`context entry: hi 0x..., low 0x...`) and debugfs (`hi:lo`, `IRTE_high IRTE_low`) print it; a wider
 * one (a PASID entry, a scalable-mode context entry) word by word from 0, as the dump's
 * `pasid table entry[i]` lines; one word alone.
 */
function rawText(raw: readonly string[]): string {
  if (raw.length === 1) return '0x' + raw[0]!;
  if (raw.length === 2) return `hi 0x${raw[1]!}, lo 0x${raw[0]!}`;
  return raw.map((w, i) => `[${i}] 0x${w}`).join(' ');
}

function stepLines(step: WalkStep, n: number, indent: string): string[] {
  const where = step.entryAddress ? ` @ ${step.entryAddress}` : '';
  const index = step.index !== undefined ? `[${step.index}]` : '';
  const stage = step.stage ? ` (stage ${step.stage})` : '';
  const cached = step.cached ? ` (from the ${step.cached})` : '';
  const lines = [`${indent}${String(n).padStart(2)}. ${step.structure}${index}${stage}${where}${cached}`];
  if (step.raw.length) lines.push(`${indent}      raw     ${rawText(step.raw)}`);
  if (Object.keys(step.fields).length) lines.push(`${indent}      fields  ${fieldsText(step.fields)}`);
  lines.push(`${indent}      ${(step.ok ? 'ok' : 'FAIL').padEnd(8)}${step.check}`);
  step.nestedTrace?.forEach((s, i) => lines.push(...stepLines(s, i + 1, indent + '        ')));
  return lines;
}

export function describeRequest(r: DmaRequest, device: string): string {
  const access = r.exec ? 'execute' : r.write ? 'write' : 'read';
  const pasid = r.pasid === undefined ? 'without PASID' : `PASID 0x${r.pasid.toString(16)}${r.priv ? ' (privileged)' : ''}`;
  const addr = typeof r.addr === 'number' ? '0x' + r.addr.toString(16) : r.addr.toString();
  return `${device} ${pasid}: ${access} ${addr}`;
}

/** The whole walk: the request, each step, and the outcome. */
export function describeWalk(request: DmaRequest, device: string, result: TranslationResult): string[] {
  const lines = [`Walk: ${describeRequest(request, device)}`];
  result.trace?.forEach((s, i) => lines.push(...stepLines(s, i + 1, '')));
  if (result.ok) {
    const perms = [result.perms.read && 'read', result.perms.write && 'write', result.perms.exec && 'exec', result.perms.priv && 'supervisor'].filter(Boolean).join('/');
    const did = result.did !== undefined ? `, DID ${result.did}` : '';
    lines.push(`Result: ${result.output} (${sizeName(result.pageSize)} page, ${perms || 'no access'}${did}; ${result.source}, ${plural(result.reads, 'table read')})`);
  } else {
    lines.push(`Result: fault 0x${result.reason.toString(16).padStart(2, '0')}: ${result.reasonText} (${plural(result.reads, 'table read')})`);
  }
  return lines;
}

/** An interrupt request through interrupt remapping: the request, each step (the IRTE), and the outcome. */
export function describeInterruptWalk(request: InterruptRequest, device: string, result: InterruptResult): string[] {
  const lines = [`Interrupt: ${device} writes 0x${(request.data >>> 0).toString(16).padStart(8, '0')} to 0x${request.address.toString(16)}`];
  result.trace?.forEach((s, i) => lines.push(...stepLines(s, i + 1, '')));
  const from = (r: { index?: number; source?: string }) => (r.index !== undefined ? `IRTE ${r.index}${r.source === 'interrupt-entry-cache' ? ' (from the interrupt entry cache)' : ''}` : '');
  switch (result.outcome) {
    case 'remapped':
    case 'pass-through': {
      const how = result.outcome === 'remapped' ? `remapped by ${from(result)}` : result.why === 'remapping-disabled' ? 'passed through (remapping off)' : 'passed through (compatibility format)';
      lines.push(`Result: vector 0x${result.vector.toString(16)} to APIC ID 0x${result.destination.toString(16)} (${result.destinationMode}, ${result.deliveryMode}, ${result.triggerMode}${result.redirectionHint ? ', redirectable' : ''}); ${how}`);
      break;
    }
    case 'posted':
      lines.push(`Result: vector 0x${result.vector.toString(16)} posted to the descriptor at ${result.descriptor}${result.urgent ? ' (urgent)' : ''}; ${from(result)}`);
      break;
    case 'fault':
      lines.push(`Result: fault 0x${result.reason.toString(16).padStart(2, '0')}: ${result.reasonText}${result.recorded ? '' : ' (not recorded)'}`);
      break;
  }
  if (result.stale) lines.push(`Stale: ${result.stale.message}`);
  return lines;
}
