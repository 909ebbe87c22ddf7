/**
 * Removes what tools put in front of a kernel message: mail quoting, syslog priorities, `dmesg -x`
 * facility:level, dmesg / `dmesg -T` / printk-caller / serial-capture brackets, journalctl and syslog
 * date-host-ident headers, and Xen's `(XEN) ` console tag. The message itself (`DMAR: ...`, a device
 * prefix such as `amdgpu 0000:0b:00.0: `) is kept: the vendor readers need it.
 */

export interface StrippedLine {
  /** The message, without leading whitespace. */
  readonly msg: string;
  /** The innermost timestamp found (kernel uptime over syslog date), as printed. */
  readonly timestamp: string | null;
  /** Whether anything but whitespace was removed: a mail continuation line usually has no prefix at all. */
  readonly hadPrefix: boolean;
  /**
   * Whether the line carried its own record header (timestamp, syslog header, priority, dmesg -x level):
   * then it is a new message, not the wrapped tail of the previous one.
   */
  readonly stamped: boolean;
  /** Whether whitespace directly preceded the message (quoted-printable continuations keep it). */
  readonly leadingSpace: boolean;
}

const MAX_LINE = 4096;
const QUOTE = /^[ \t]*>[> \t]*/;
const PRIORITY = /^<\d{1,3}>(?:1 )?/;
const DMESG_X = /^(?:kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|local[0-7]) *:(?:emerg|alert|crit|err|warn|notice|info|debug) *: ?/;
/** `[ 1234.567890]`, `[    T123]`, `[Mon Jan  1 12:00:00 2024]`, `[2024-01-01 12:00:00.123]`, `[12:00:00.123]`. */
const BRACKET =
  /^\[ *(\d{1,10}\.\d{1,9}|[TC]\d{1,7}|[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}|\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?|\d\d:\d\d:\d\d(?:[.,]\d{1,9})?)\] ?/;
const SYSLOG =
  /^([A-Z][a-z]{2} {1,2}\d{1,2} \d\d:\d\d:\d\d(?:\.\d{1,9})?|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|[+-]\d\d:?\d\d)?) +(?:([^\s:]{1,64}) +)?([\w.\-/]{1,64}(?:\[\d{1,10}\])?): ?/;
/** Syslog idents that are really the start of the message (a header without an ident). */
const MESSAGE_TAGS = new Set(['DMAR', 'DMAR-IR', 'AMD-Vi', 'INTR-REMAP']);
const ANSI = /\x1b\[[0-9;?]{0,16}[A-Za-z]/g;

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

export function stripPrefixes(raw: string): StrippedLine {
  let s = raw.length > MAX_LINE ? raw.slice(0, MAX_LINE) : raw;
  if (s.indexOf('\x1b') !== -1) s = s.replace(ANSI, '');
  if (s.indexOf('\r') !== -1) s = s.replace(/\r/g, '');
  if (s.indexOf('=3D') !== -1) s = s.replace(/=3D/g, '=');
  let timestamp: string | null = null;
  let hadPrefix = false;
  let stamped = false;
  let leadingSpace = false;
  for (let guard = 0; guard < 8; guard++) {
    let start = 0;
    while (start < s.length && (s.charCodeAt(start) === 32 || s.charCodeAt(start) === 9)) start++;
    if (start > 0) {
      leadingSpace = true;
      s = s.slice(start);
    }
    const c = s.charCodeAt(0);
    let cut = 0;
    if (c === 62 /* > */) cut = QUOTE.exec(s)?.[0].length ?? 0;
    else if (c === 60 /* < */) {
      cut = PRIORITY.exec(s)?.[0].length ?? 0;
      if (cut > 0) stamped = true;
    }
    else if (c === 91 /* [ */) {
      const fast = dmesgStamp(s);
      if (fast > 0) {
        timestamp = s.slice(1, fast - 1).trim();
        s = s.slice(s.charCodeAt(fast) === 32 ? fast + 1 : fast);
        hadPrefix = true;
        stamped = true;
        leadingSpace = false;
        continue;
      }
      const m = BRACKET.exec(s);
      if (m) {
        cut = m[0].length;
        // printk caller ids ([T123], [C2]) are not times.
        if (!/^[TC]/.test(m[1]!)) timestamp = m[1]!;
        stamped = true;
      }
    } else if (c === 40 /* ( */) {
      if (s.startsWith('(XEN)')) cut = 5;
    } else if (c >= 97 && c <= 117 /* a-u */) {
      // `kern  :err   : ` has its colon within ten characters; most messages that start with a letter do not.
      const colon = s.indexOf(':');
      if (colon > 3 && colon < 11) cut = DMESG_X.exec(s)?.[0].length ?? 0;
      if (cut > 0) stamped = true;
    } else if (((c >= 65 && c <= 90) && s.charCodeAt(3) === 32) || (c >= 48 && c <= 57 && s.charCodeAt(4) === 45)) {
      // `Jan  1 ...` or `2024-01-01...`
      const h = SYSLOG.exec(s);
      if (h) {
        // A header without an ident: what looks like the ident is the message's own tag, which stays.
        cut = MESSAGE_TAGS.has(h[3]!.replace(/\[\d+\]$/, '')) ? h[0].lastIndexOf(h[3]!) : h[0].length;
        timestamp = h[1]!;
        stamped = true;
      }
    }
    if (cut === 0) break;
    hadPrefix = true;
    leadingSpace = false;
    s = s.slice(cut);
  }
  return { msg: s, timestamp, hadPrefix, stamped, leadingSpace };
}
