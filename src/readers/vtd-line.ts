import { type LogEvent, newEvent } from './log-event';
import type { LineInfo } from './log-reader';

// What every reader of a VT-d line shares: the driver's prefix, the event a line starts, and the reason tail a
// wrap leaves (a fault line's, a walk dump's and Xen's alike).

/** The message after the driver's prefix: `DMAR: ` (4.2 and later), `dmar: ` (before), `DMAR-IR: `. */
export function afterTag(msg: string): string {
  if (msg.startsWith('DMAR:') || msg.startsWith('dmar:')) return msg.slice(5).trimStart();
  if (msg.startsWith('DMAR-IR:')) return msg.slice(8).trimStart();
  return msg;
}

/** An Intel event of the line's number and timestamp. */
export function base(info: LineInfo, kind: LogEvent['kind'], format: string): LogEvent {
  const e = newEvent(info.lineNo, 'intel', kind, format);
  e.timestamp = info.timestamp;
  return e;
}

/**
 * A fault line that a mail client or bug tracker wrapped inside its reason text leaves the rest of the
 * text on a line of its own, without a header: it belongs to the fault.
 */
export function absorbReasonTail(e: LogEvent, msg: string, info: LineInfo): boolean {
  const printed = e.details.printedReason;
  if (typeof printed !== 'string' || printed === '' || info.timestamp !== null || !e.reason) return false;
  const whole = `${printed} ${msg.trim()}`;
  if (!e.reason.text.startsWith(whole)) return false;
  if (whole === e.reason.text) delete e.details.printedReason;
  else e.details.printedReason = whole;
  return true;
}
