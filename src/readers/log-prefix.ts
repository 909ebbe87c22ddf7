/**
 * Removes what tools and transports put around a kernel message: mail quoting, quoted-printable
 * encoding, HTML escaping, ANSI colours, syslog priorities, `dmesg -x` facility:level, dmesg / `dmesg -T`
 * / printk-caller / serial-capture brackets, journalctl and syslog date-host-ident headers (and their
 * bare `kernel:` remnant), and Xen's `(XEN) ` / `(dN) ` console tags. The message itself (`DMAR: ...`, a
 * device prefix such as `amdgpu 0000:0b:00.0: `) is kept: the vendor readers need it.
 *
 * One call handles one line. A carriage return inside a line is a line break (serial and IPMI consoles
 * end lines with CR, CR CR LF or a lone CR), and so is an HTML `<br>` or block tag (a web page may hold
 * a whole log on one source line): `splitLine` cuts a line there before it is stripped, and the decoder
 * feeds each part on its own. Deleting the break instead would glue the tokens on either side of it into
 * a device, address or PASID that the text never had.
 */

export interface StrippedLine {
  /** The message, without leading whitespace (and without a quoted-printable soft break). */
  readonly msg: string;
  /** The innermost timestamp found (kernel uptime over syslog date), as printed. */
  readonly timestamp: string | null;
  /** Whether anything but whitespace was removed: a mail continuation line usually has no prefix at all. */
  readonly hadPrefix: boolean;
  /**
   * Whether the line carried its own record header (timestamp, syslog header, priority, dmesg -x level,
   * Xen's console tag): then it is a new message, not the wrapped tail of the previous one.
   */
  readonly stamped: boolean;
  /** Whether whitespace directly preceded the message (quoted-printable continuations keep it). */
  readonly leadingSpace: boolean;
  /**
   * Whether the line ended in a quoted-printable soft line break (`=` at the end): the message goes on
   * in the next line, with nothing in between. The `=` is not part of `msg`.
   */
  readonly softBreak: boolean;
}

/** Longest part of a line that is stripped and read; no IOMMU message comes close. */
export const MAX_LINE = 4096;
/** At most this many carriage-return-separated parts of one line are read; the rest is one more part. */
export const MAX_PARTS = 64;

/** Quote marks, each with the space after it; a further space is the quoted text's own (a soft-broken continuation keeps it). */
const QUOTE = /^[ \t]*>(?:[ \t]?>)*[ \t]?/;
const PRIORITY = /^<\d{1,3}>(1 )?/;
/** RFC 5424 after `<N>1 `: timestamp (or `-`), host, app, procid, msgid, structured data (or `-`). */
const RFC5424 =
  /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)|-) \S{1,255} \S{1,48} \S{1,128} \S{1,32} (?:-|(?:\[[^\]]{0,256}\]){1,8}) ?/;
const DMESG_X = /^(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7]) *:(?:emerg|alert|crit|err|warn|notice|info|debug) *: ?/;
/**
 * `[ 1234.567890]`, `[    T123]`, `[Mon Jan  1 12:00:00 2024]`, `[2024-01-01 12:00:00.123]` (Xen's
 * console_timestamps=date/datems, tio), `[12:00:00.123]` (tio), `[000000de6d2ca1c0]` (Xen's =raw, the
 * TSC in hex).
 */
const BRACKET =
  /^\[ *(\d{1,10}\.\d{1,9}|[TC]\d{1,7}|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?|\d\d:\d\d:\d\d(?:[.,]\d{1,9})?|[0-9a-f]{16})\] ?/;
/**
 * A date: syslog `Jun 10 04:03:08` (journalctl short, short-precise), ISO 8601 (short-iso,
 * short-iso-precise, rsyslog, QEMU's `-msg timestamp=on`), journalctl short-full `Mon 2024-06-10
 * 04:03:08 CEST`.
 */
const DATE =
  /^(?:[A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,9})?|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?|[A-Z][a-z]{2} \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d{1,9})? [A-Z][A-Za-z0-9+-]{1,5})(?= )/;
/**
 * After a date: `host ident: ` or `ident: ` (`kernel:`, `kernel[0]:`, `hypervisor:`), with BusyBox
 * syslogd's `facility.level` between the host and the ident.
 */
const HOST_IDENT =
  /^ +(?:([^\s:[\]]{1,64}) +)?(?:(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7])\.(?:emerg|alert|crit|err|warn|warning|notice|info|debug) +)?([\w.\-/]{1,64}(?:\[\d{1,10}\])?): ?/;
/** journalctl short-monotonic: `[  103.512345] host kernel: ` (the bracket is stripped first). */
const MONOTONIC_HOST = /^[^\s:[\]]{1,64} kernel: ?/;
/** Syslog idents that are really the start of the message (a header without an ident). */
const MESSAGE_TAGS = new Set(['DMAR', 'DMAR-IR', 'AMD-Vi', 'INTR-REMAP', 'SMMUv3']);
/** What may directly follow a date without host and ident: moreutils `ts` before dmesg, a Xen console. */
const AFTER_BARE_DATE = /^ +(?=\[|\(XEN\)|<\d)/;
/**
 * A console prompt that a kernel message was printed after (the kernel does not start a new line for
 * it): `host login: `, `root@host:~# `; only when a dmesg timestamp follows.
 */
const PROMPT = /^(?:\S{1,64} login: |\S{0,64}[#$>] )(?=\[ {0,12}\d{1,10}\.\d{6}\])/;

/** CSI (colours, cursor moves), OSC (titles), and the two-byte escapes (charset selection, keypad...). */
const ANSI = /\x1b(?:\[[0-?]{0,32}[ -/]{0,4}[@-~]|\][^\x07\x1b]{0,256}(?:\x07|\x1b\\)|[()*+][0-~]|[=>78DEHMNOZc])/g;
/**
 * The inline tags a web page wraps a pasted log in (removed); `<3>` (a priority) and `<idle>` (ftrace)
 * are not among them. Line breaks and block tags end a line (splitLine).
 */
const HTML_TAG = /<\/?(?:wbr|code|tt|span|b|i|em|strong|font|mark|samp|kbd|a)(?:\s[^<>]{0,200})?\s?\/?>/gi;
const HTML_BREAK = /<(?:br|\/?(?:p|div|pre|li|tr|td|table|h[1-6]|blockquote))(?:\s[^<>]{0,200})?\s?\/?>/gi;
const HAS_HTML_BREAK = /<(?:br|\/?(?:p|div|pre|li|tr|td|table|h[1-6]|blockquote))[\s/>]/i;
const ENTITY = /&(?:(lt|gt|amp|quot|apos|nbsp|#39|#34)|#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6}));/g;
const NAMED: Readonly<Record<string, string>> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'", nbsp: ' ', '#39': "'", '#34': '"' };
/** Control characters other than tab, and the no-break space a web page or mail client puts for a space. */
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f\u00a0]/g;
const HAS_CONTROL = /[\x00-\x08\x0a-\x1f\x7f\u00a0]/;
/** Quoted-printable trailing whitespace (`=20`, `=09`) before the end of the line or a soft break. */
const QP_TRAILING = /(?:=20|=09)+$/;

/** Where the `=` of a quoted-printable soft break would be in `s`: its last character but spaces, tabs and CRs; else -1. */
function softBreakAt(s: string): number {
  let end = s.length;
  for (let c = s.charCodeAt(end - 1); c === 32 || c === 9 || c === 13; c = s.charCodeAt(end - 1)) end--;
  return end > 0 && s.charCodeAt(end - 1) === 61 /* = */ ? end - 1 : -1;
}

/**
 * Whether a line (or a part of one between CRs) may end in a quoted-printable soft break, which the decoder
 * joins with the next line: `=` as its last character but trailing blanks. A caller that skips lines
 * without a marker (log-markers.ts) feeds these too, as a soft break may cut a marker in two (`DM=`, then
 * `AR: ...`); the decoder then tells a soft break from a literal `=` (isSoftBreak).
 */
export function mayEndInSoftBreak(line: string): boolean {
  return softBreakAt(line) !== -1;
}

/**
 * Whether the `=` at `at`, the last character of a line, is a quoted-printable soft break rather than an
 * `=` that a mail client wrapped the line after (`fault address =`, `qw1 =`): in a quoted-printable
 * body every other `=` is an escape (`=3D`), and an encoder breaks only a line it must (past 76
 * characters), so a soft break after a space ends a line of nearly that length.
 */
function isSoftBreak(s: string, at: number): boolean {
  const literal = /=(?![0-9A-Fa-f]{2})/g;
  for (let m = literal.exec(s); m !== null && m.index < at; m = literal.exec(s)) return false;
  const before = s.charCodeAt(at - 1);
  return !(before === 32 || before === 9) || at >= 72;
}

function decodeEntity(_m: string, named: string | undefined, dec: string | undefined, hex: string | undefined): string {
  if (named !== undefined) return NAMED[named]!;
  const code = dec !== undefined ? parseInt(dec, 10) : parseInt(hex!, 16);
  // Only printable ASCII: an entity for anything else would not be part of a kernel message.
  return code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : ' ';
}

/**
 * The parts of `s` between carriage returns, empty ones dropped; past `max` parts the rest stays one part,
 * its carriage returns kept. The one way a lone CR breaks a line: the decoder (splitLine), decodeLogText
 * and the CLI's line stream (which hands a line over in such parts) cut alike.
 */
export function crParts(s: string, max = Infinity): string[] {
  if (s.indexOf('\r') === -1) return s === '' ? [] : [s];
  const parts: string[] = [];
  let start = 0;
  while (start <= s.length) {
    let cr = s.indexOf('\r', start);
    if (cr === -1 || parts.length === max - 1) cr = s.length;
    if (cr > start) parts.push(s.slice(start, cr));
    start = cr + 1;
  }
  return parts;
}

/**
 * The parts of one line between carriage returns and HTML line breaks (a trailing CR, or several, is the
 * end of the line: CR LF, CR CR LF). Empty parts are dropped (a line with nothing else is one empty part);
 * past MAX_PARTS the rest stays together, with its carriage returns read as spaces by stripPrefixes.
 */
export function splitLine(raw: string): string[] {
  let end = raw.length;
  while (end > 0 && raw.charCodeAt(end - 1) === 13) end--;
  let s = end === raw.length ? raw : raw.slice(0, end);
  if (s.indexOf('<') !== -1 && HAS_HTML_BREAK.test(s)) s = s.replace(HTML_BREAK, '\r');
  if (s.indexOf('\r') === -1) return [s];
  return crParts(s, MAX_PARTS);
}

/** `[ 1234.567890] ` without a regular expression: by far the most common prefix. */
function dmesgStamp(s: string): number {
  if (s.charCodeAt(0) !== 91 /* [ */) return 0;
  let i = 1;
  while (s.charCodeAt(i) === 32) i++;
  const digits = i;
  while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
  if (i === digits || s.charCodeAt(i) !== 46 /* . */) return 0;
  i++;
  const frac = i;
  while (s.charCodeAt(i) >= 48 && s.charCodeAt(i) <= 57) i++;
  if (i === frac || s.charCodeAt(i) !== 93 /* ] */) return 0;
  return i + 1;
}

/** Undoes the transports: ANSI colours, HTML, quoted-printable, control characters. */
function clean(raw: string): { s: string; softBreak: boolean } {
  let s = raw.length > MAX_LINE ? raw.slice(0, MAX_LINE) : raw;
  // CR LF and CR CR LF end a line; a CR inside one is a break that splitLine has already cut at.
  if (s.charCodeAt(s.length - 1) === 13) s = s.replace(/\r+$/, '');
  if (s.indexOf('\x1b') !== -1) s = s.replace(ANSI, '');
  if (s.indexOf('<') !== -1) s = s.replace(HTML_TAG, '').replace(HTML_BREAK, ' ');
  if (s.indexOf('&') !== -1) s = s.replace(ENTITY, decodeEntity);
  // A soft line break is a `=` at the very end (trailing whitespace after it is not part of the body).
  const at = softBreakAt(s);
  const softBreak = at !== -1 && isSoftBreak(s, at);
  if (softBreak) s = s.slice(0, at);
  if (s.indexOf('=') !== -1) {
    if (s.indexOf('=3D') !== -1) s = s.replace(/=3D/g, '=');
    if (s.indexOf('=C2=A0') !== -1) s = s.replace(/=C2=A0/g, ' ');
    if (s.endsWith('=20') || s.endsWith('=09')) {
      const t = QP_TRAILING.exec(s);
      if (t) s = s.slice(0, t.index) + t[0].replace(/=20/g, ' ').replace(/=09/g, '\t');
    }
  }
  // Read as spaces, never deleted: deleting one would join the tokens on either side of it.
  if (HAS_CONTROL.test(s)) s = s.replace(CONTROL, ' ');
  return { s, softBreak };
}

export function stripPrefixes(raw: string): StrippedLine {
  const cleaned = clean(raw);
  let s = cleaned.s;
  let timestamp: string | null = null;
  let hadPrefix = false;
  let stamped = false;
  let leadingSpace = false;
  let monotonic = false;
  for (let guard = 0; guard < 10; guard++) {
    let start = 0;
    while (start < s.length && (s.charCodeAt(start) === 32 || s.charCodeAt(start) === 9)) start++;
    if (start > 0) {
      leadingSpace = true;
      s = s.slice(start);
    }
    const c = s.charCodeAt(0);
    let cut = 0;
    const afterStamp = monotonic;
    monotonic = false;
    if (c === 62 /* > */) cut = QUOTE.exec(s)?.[0].length ?? 0;
    else if (c === 60 /* < */) {
      const p = PRIORITY.exec(s);
      if (p) {
        cut = p[0].length;
        stamped = true;
        if (p[1] !== undefined) {
          const h = RFC5424.exec(s.slice(cut));
          if (h) {
            cut += h[0].length;
            if (h[1] !== '-') timestamp = h[1]!;
          }
        }
      }
    } else if (c === 91 /* [ */) {
      const fast = dmesgStamp(s);
      if (fast > 0) {
        timestamp = s.slice(1, fast - 1).trim();
        s = s.slice(s.charCodeAt(fast) === 32 ? fast + 1 : fast);
        hadPrefix = true;
        stamped = true;
        leadingSpace = false;
        monotonic = true;
        continue;
      }
      const m = BRACKET.exec(s);
      if (m) {
        cut = m[0].length;
        // printk caller ids ([T123], [C2]) are not times.
        if (!/^[TC]\d/.test(m[1]!)) timestamp = m[1]!;
        stamped = true;
      }
    } else if (c === 40 /* ( */) {
      // Xen's console tag, and `(dN) ` for what a guest printed through Xen's console.
      if (s.startsWith('(XEN)')) cut = 5;
      else cut = /^\(d\d{1,5}\) /.exec(s)?.[0].length ?? 0;
      if (cut > 0) stamped = true;
    } else if (c >= 97 && c <= 117 /* a-u */) {
      if (c === 107 /* k */ && s.startsWith('kernel:')) {
        // What is left of a syslog header when the date and host were cut (`grep kernel: | cut -f5-`).
        cut = s.charCodeAt(7) === 32 ? 8 : 7;
      } else {
        // `kern  :err   : ` has its colon within ten characters; most messages that start with a letter do not.
        const colon = s.indexOf(':');
        if (colon > 3 && colon < 11) cut = DMESG_X.exec(s)?.[0].length ?? 0;
      }
      if (cut > 0) stamped = true;
    } else if (((c >= 65 && c <= 90) && s.charCodeAt(3) === 32) || (c >= 48 && c <= 57 && s.charCodeAt(4) === 45)) {
      // `Jan  1 ...`, `Mon 2024-...` or `2024-01-01...`
      const d = DATE.exec(s);
      if (d) {
        const rest = s.slice(d[0].length);
        const h = HOST_IDENT.exec(rest);
        if (h) {
          const ident = h[2]!.replace(/\[\d+\]$/, '');
          // A header without an ident: what looks like the ident is the message's own tag, which stays.
          const keep = MESSAGE_TAGS.has(ident) || ident.startsWith('qemu-system-') || ident === 'qemu-kvm';
          cut = d[0].length + (keep ? h[0].lastIndexOf(h[2]!) : h[0].length);
        } else {
          const bare = AFTER_BARE_DATE.exec(rest);
          if (bare) cut = d[0].length + bare[0].length;
        }
        if (cut > 0) {
          timestamp = d[0];
          stamped = true;
        }
      }
    }
    if (cut === 0 && afterStamp) {
      // journalctl -o short-monotonic puts the host and `kernel:` after the bracket.
      cut = MONOTONIC_HOST.exec(s)?.[0].length ?? 0;
    }
    if (cut === 0 && !hadPrefix) cut = PROMPT.exec(s)?.[0].length ?? 0;
    if (cut === 0) break;
    hadPrefix = true;
    leadingSpace = false;
    s = s.slice(cut);
  }
  return { msg: s, timestamp, hadPrefix, stamped, leadingSpace, softBreak: cleaned.softBreak };
}
