import * as vscode from 'vscode';
import type { EventKind, LogEvent } from '../readers/log-event';
import { eventTitle, explainEvent } from '../readers/log-explain';
import { LOG_FORMATS } from '../readers/log-formats';

/**
 * The readers' plain-words explanation of a log event (src/readers/log-explain.ts), shaped for the
 * editor: a title, labelled parts (what, why, next, ...) and the format with the kernel versions that
 * print it; as hover Markdown and as a Problems-panel message.
 */

/** Kinds that report something going wrong: Warnings in the Problems panel. The others are Information. */
const PROBLEM_KINDS: ReadonlySet<EventKind> = new Set<EventKind>([
  'dma-fault',
  'interrupt-fault',
  'page-request',
  'invalidation-error',
  'config-error',
  'hardware-error',
  'driver-error',
  'queue-overflow',
]);

export function isProblem(e: LogEvent): boolean {
  // A fault QEMU traced but did not record (compressed behind a pending one) never reached the guest: a
  // storm of them is one incident, the recorded fault, not a warning each.
  if (e.format === 'qemu-trace' && e.details.recorded === false) return false;
  return PROBLEM_KINDS.has(e.kind);
}

export interface Explanation {
  /** What the event is, without the line numbers and the format (the format line has it): `Intel VT-d DMA fault on dmar1 at 12.345`. */
  readonly title: string;
  /** `what`, `why`, `next`, `note`, ... in the readers' order. */
  readonly parts: readonly { readonly label: string; readonly text: string }[];
  readonly format: string;
  /** Who prints this format, and in which versions (docs/log-formats.md); undefined for an unknown id. */
  readonly printer: string | undefined;
  readonly versions: string | undefined;
}

const LABELS: Record<string, string> = { what: 'What', why: 'Why', next: 'Check next', note: 'Note', has: 'Has', walk: 'Walk', pasid: 'PASID entry', head: 'Rejected descriptor', dte: 'DTE' };

export function explanationOf(e: LogEvent): Explanation {
  const [header = '', ...rest] = explainEvent(e);
  const fmt = LOG_FORMATS[e.format];
  // A one-line explanation (a trace event, a fault QEMU did not record) is its own title.
  const title = rest.length > 0 ? eventTitle(e, false) : header.replace(/^lines? \d+(?:-\d+)?: /, '');
  const parts: { label: string; text: string }[] = [];
  for (const line of rest) {
    const m = /^\s+(\w+):\s+(.*)$/.exec(line);
    if (m) parts.push({ label: LABELS[m[1]!] ?? m[1]!, text: m[2]! });
    else if (parts.length > 0) parts[parts.length - 1] = { ...parts[parts.length - 1]!, text: `${parts[parts.length - 1]!.text} ${line.trim()}` };
    else parts.push({ label: '', text: line.trim() });
  }
  return { title, parts, format: e.format, printer: fmt?.printer, versions: fmt?.versions };
}

/** The Problems-panel message: the title, and what happened. */
export function diagnosticMessage(e: LogEvent): string {
  const x = explanationOf(e);
  const what = x.parts.find((p) => p.label === LABELS.what);
  return what ? `${x.title}: ${what.text}` : x.title;
}

/** Escapes Markdown syntax but keeps spaces as spaces (appendText turns them into &nbsp;, which stops wrapping). */
export function escapeMarkdown(text: string): string {
  return text.replace(/[\\`*_{}[\]()#+\-.!<>|~&]/g, '\\$&');
}

/** Hover text for the events on one line (usually one). */
export function hoverMarkdown(events: readonly LogEvent[]): vscode.MarkdownString {
  const md = new vscode.MarkdownString();
  events.forEach((e, i) => {
    if (i > 0) md.appendMarkdown('\n\n---\n\n');
    const x = explanationOf(e);
    const lines = e.endLine > e.line ? `lines ${e.line}-${e.endLine}` : `line ${e.line}`;
    md.appendMarkdown(`**${escapeMarkdown(x.title)}** (${lines})\n\n`);
    for (const p of x.parts) md.appendMarkdown(`${p.label ? `*${p.label}:* ` : ''}${escapeMarkdown(p.text)}\n\n`);
    md.appendMarkdown(`Format \`${x.format}\``);
    if (x.versions) md.appendMarkdown(`: ${escapeMarkdown(x.versions)} (${escapeMarkdown(x.printer ?? '')})`);
  });
  return md;
}
