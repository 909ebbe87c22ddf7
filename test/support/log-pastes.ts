// What the log-reader tests share: the transports people paste logs through (to turn a plain log into a
// paste), the corpus of pastes in test/fixtures/pastes/, and the check that a decoded event has no field
// the text did not have. Written from the transports' own rules (RFC 2045 quoted-printable, HTML,
// ECMA-48 escapes, mail quoting), not from the decoder.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LogEvent } from '../../src/readers/log-event';

export const root = join(__dirname, '../../..');
export const logsDir = join(root, 'test/fixtures/logs');
export const pastesDir = join(root, 'test/fixtures/pastes');

/** The fields of an event a paste's expectation lists. */
export interface ExpectedEvent {
  line: number;
  endLine: number;
  vendor: string | null;
  kind: string;
  format: string;
  device: string | null;
  pasid: number | null;
  address: string | null;
  access: string | null;
  reason: [number, string] | null;
  timestamp: string | null;
  iommu: string | null;
}

export interface Paste {
  name: string;
  text: string;
  expected: { paste: string; transport: string; vendors: Record<string, string[]>; events: ExpectedEvent[]; unrecognisedIommuLines: number[] };
}

/** Every paste beside its expectation file (`<name>.<ext>` and `<name>.json`). */
export function pastes(): Paste[] {
  const files = readdirSync(pastesDir);
  return files
    .filter((f) => !f.endsWith('.json'))
    .sort()
    .map((f) => {
      const base = f.slice(0, f.lastIndexOf('.'));
      return { name: f, text: readFileSync(join(pastesDir, f), 'utf8'), expected: JSON.parse(readFileSync(join(pastesDir, `${base}.json`), 'utf8')) as Paste['expected'] };
    });
}

/** The plain logs of test/fixtures/logs that transports are applied to (lspci is not a log). */
export function plainLogs(): { name: string; text: string }[] {
  return readdirSync(logsDir)
    .filter((f) => !f.startsWith('lspci'))
    .sort()
    .map((f) => ({ name: f, text: readFileSync(join(logsDir, f), 'utf8') }));
}

export function project(e: LogEvent): ExpectedEvent {
  return {
    line: e.line,
    endLine: e.endLine,
    vendor: e.vendor,
    kind: e.kind,
    format: e.format,
    device: e.device,
    pasid: e.pasid,
    address: e.address,
    access: e.access,
    reason: e.reason ? [e.reason.code, e.reason.text] : null,
    timestamp: e.timestamp,
    iommu: e.iommu,
  };
}

export function linesOf(text: string): string[] {
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  return lines;
}

// ---- Transports: each turns the lines of a log into the lines of a paste. ----

/** Word wrap at `width` columns, breaking only at spaces, as mail clients and bug trackers do. */
export function wrapLine(line: string, width: number, prefix = '', cont = prefix): string[] {
  const out: string[] = [];
  let head = prefix;
  let text = line;
  const cols = (s: string) => s.replace(/\t/g, '        ').length;
  while (cols(head + text) > width) {
    let cut = -1;
    for (let i = 1; i < text.length; i++) if (text[i] === ' ' && cols(head + text.slice(0, i)) <= width) cut = i;
    if (cut <= 0) break;
    out.push(head + text.slice(0, cut).replace(/ +$/, ''));
    text = text.slice(cut + 1);
    head = cont;
  }
  out.push(head + text);
  return out;
}

/** RFC 2045 quoted-printable: `=` as `=3D`, trailing whitespace encoded, lines cut at 76 with soft breaks. */
export function quotedPrintable(line: string): string[] {
  let s = line.replace(/=/g, '=3D');
  s = s.replace(/[ \t]+$/, (ws) => ws.replace(/ /g, '=20').replace(/\t/g, '=09'));
  const out: string[] = [];
  while (s.length > 76) {
    let cut = 75;
    // Never cut inside an =XX escape.
    const esc = s.lastIndexOf('=', cut);
    if (esc > cut - 3) cut = esc;
    out.push(s.slice(0, cut) + '=');
    s = s.slice(cut);
  }
  out.push(s);
  return out;
}

const HTML_ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
export const htmlEscape = (line: string): string => line.replace(/[&<>"']/g, (c) => HTML_ESCAPES[c]!);

/** util-linux `dmesg --color=always`: the timestamp green, a `tag: ` prefix brown, the rest red. */
export function colour(line: string): string {
  const m = /^(\[[^\]]{1,20}\])( ?)([\w.-]{1,20}: )?(.*)$/.exec(line);
  if (!m) return `\x1b[31m${line}\x1b[0m`;
  return `\x1b[32m${m[1]}\x1b[0m${m[2]}${m[3] ? `\x1b[33m${m[3]}\x1b[0m` : ''}\x1b[31m${m[4]}\x1b[0m`;
}

export interface Transport {
  readonly name: string;
  /** For a word wrap: the width and the prefix of each line. */
  readonly wrap?: { width: number; prefix: string };
  /** The paste's text. */
  apply(lines: string[]): string;
  /** Whether it keeps every line where it was (events keep their line numbers). */
  readonly keepsLines: boolean;
  /** Whether it keeps the timestamps the log had. */
  readonly keepsTimestamps: boolean;
}

const t = (name: string, keepsLines: boolean, keepsTimestamps: boolean, apply: (lines: string[]) => string): Transport => ({ name, keepsLines, keepsTimestamps, apply });

/**
 * A header a journal, syslog or serial capture puts in front of each record. Only lines that start a
 * record get one: a line the log already has as a wrapped tail (a bare continuation) would not.
 */
const RECORD = /^(?:\[ *\d|\(XEN\)|<\d>)/;
const headed = (header: (i: number) => string) => (ls: string[]) => ls.map((l, i) => (RECORD.test(l) ? header(i) + l : l) + '\n').join('');

export const TRANSPORTS: readonly Transport[] = [
  t('CR LF', true, true, (ls) => ls.map((l) => l + '\r\n').join('')),
  t('CR CR LF (serial capture)', true, true, (ls) => ls.map((l) => l + '\r\r\n').join('')),
  t('mail quoting "> "', true, true, (ls) => ls.map((l) => `> ${l}\n`).join('')),
  t('mail quoting ">> " and "> > "', true, true, (ls) => ls.map((l, i) => `${i % 2 ? '> > ' : '>> '}${l}\n`).join('')),
  t('dmesg --color=always', true, true, (ls) => ls.map((l) => colour(l) + '\n').join('')),
  t('HTML-escaped in <pre>', true, true, (ls) => ls.map((l) => htmlEscape(l) + '\n').join('')),
  t('HTML, one source line, <br> between', false, true, (ls) => ls.map(htmlEscape).join('<br>') + '\n'),
  t('quoted-printable', false, true, (ls) => ls.flatMap(quotedPrintable).join('\n') + '\n'),
  t('quoted-printable, then quoted', false, true, (ls) => ls.flatMap((l) => quotedPrintable(`> ${l}`)).join('\n') + '\n'),
  t('journalctl -o short', true, false, headed(() => 'Jun 10 04:03:08 host kernel: ')),
  t('syslog with BusyBox facility.level', true, false, headed(() => 'Jun 10 04:03:08 host kern.err kernel: ')),
  t('bare kernel: prefix', true, true, headed(() => 'kernel: ')),
  t('serial capture with tio stamps', true, false, headed((i) => `[04:03:${String(10 + (i % 50)).padStart(2, '0')}.${String(i % 1000).padStart(3, '0')}] `)),
  t('lone CR between lines', false, true, (ls) => ls.join('\r') + '\n'),
  { ...t('wrapped at 80', false, true, (ls) => ls.flatMap((l) => wrapLine(l, 80)).join('\n') + '\n'), wrap: { width: 80, prefix: '' } },
  { ...t('wrapped at 72 and quoted', false, true, (ls) => ls.flatMap((l) => wrapLine(l, 72, '> ')).join('\n') + '\n'), wrap: { width: 72, prefix: '> ' } },
];

// ---- The invented-field check. ----

const ANSI_ANY = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+].|.)/g;
/** Only complete sequences; an ESC that starts none stays (as a space). */
const ANSI_COMPLETE = /\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[()*+][0-~])/g;
const INLINE_TAG = /<\/?[a-zA-Z][^<>]{0,200}>/g;
const ENTITY_ANY = /&(?:(lt|gt|amp|quot|apos|nbsp|#39|#34)|#(\d{1,7})|#[xX]([0-9a-fA-F]{1,6}));/g;
const NAMED: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'", nbsp: ' ', '#39': "'", '#34': '"' };

/**
 * The texts a field of an event may be read from, given the physical lines its span covers: the lines as
 * they are, and as a reader may see them once transports are undone (escapes and tags dropped, entities
 * and quoted-printable decoded, soft-broken lines joined with and without the quote marks of the next
 * line). Every line break (LF, CR) stays a separator: nothing read may run across one, except a soft
 * break. An upper bound on what is derivable: a field found in none of them was invented.
 */
export function sourcesOf(lines: readonly string[]): string[] {
  const out = [lines.join('\n')];
  // An entity for a character that is not printable ASCII reads as a space (it cannot be part of a kernel message).
  const printable = (code: number) => (code >= 0x20 && code < 0x7f ? String.fromCharCode(code) : ' ');
  const entities = (l: string) => l.replace(ENTITY_ANY, (_m, n: string | undefined, d: string | undefined, h: string | undefined) => (n !== undefined ? NAMED[n]! : printable(d !== undefined ? parseInt(d, 10) : parseInt(h!, 16))));
  // Control characters and no-break spaces read as spaces; tags removed before or after entities are decoded (`<b&#48;r>`).
  const spaces = (l: string) => l.replace(/[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f\u00a0]/g, ' ');
  for (const [ansi, tagsFirst] of [[ANSI_ANY, true], [ANSI_COMPLETE, true], [ANSI_ANY, false]] as const) {
    const decoded = lines.map((l) => {
      const t = l.replace(ansi, '').replace(/\x1b/g, ' ');
      return spaces(tagsFirst ? entities(t.replace(INLINE_TAG, '')) : entities(t));
    });
    const plain = decoded.join('\n');
    const qp = plain.replace(/=3D/g, '=').replace(/=20/g, ' ').replace(/=09/g, '\t').replace(/=C2=A0/g, ' ');
    const soft = qp.replace(/=[ \t]*[\r\n]+[ \t>]*/g, '');
    const softSpaced = qp.replace(/=[ \t]*[\r\n]+[ \t>]*/g, ' ');
    const softKeepQuote = qp.replace(/=[ \t]*[\r\n]+/g, '');
    // A wrapped line joined back as the decoder joins it: with one space, the quote marks of the tail gone.
    const spaced = qp.split(/\r*\n|\r/).map((l) => l.replace(/^[ \t>]+/, '').replace(/[ \t]+$/, '')).join(' ');
    out.push(plain, qp, soft, softSpaced, softKeepQuote, spaced);
  }
  return out;
}

/** Runs of hex digits (lower case), each as printed: they never cross a non-hex character. */
function hexRuns(sources: readonly string[]): string[] {
  return sources.flatMap((s) => s.toLowerCase().match(/[0-9a-f]+/g) ?? []);
}

const has = (runs: readonly string[], needle: string): boolean => runs.some((r) => r.includes(needle));

/** Whether a hex value (`0x...` as the decoder writes it) can be read from the runs: whole, or as two 32-bit words. */
function hexDerivable(runs: readonly string[], value: string): boolean {
  const v = value.replace(/^0x/, '');
  const core = v.replace(/0+$/, '') || '0';
  if (has(runs, core)) return true;
  if (v.length > 8) {
    const hi = v.slice(0, -8).replace(/^0+/, '') || '0';
    const lo = v.slice(-8).replace(/0+$/, '') || '0';
    return has(runs, hi) && has(runs, lo);
  }
  return false;
}

/** The fields a format implies without printing them. */
const IMPLIED_REASON: Record<string, number> = { 'amd-not-attached': 0x2 };

/**
 * The fields of `e` that cannot be read from `lines` (the physical lines from e.line to e.endLine): a
 * device, address, PASID, reason code, unit or timestamp that the text does not contain.
 */
export function inventedFields(e: LogEvent, lines: readonly string[]): string[] {
  const sources = sourcesOf(lines);
  const runs = hexRuns(sources);
  const decimalRuns = sources.flatMap((s) => s.match(/\d+/g) ?? []);
  const text = sources.join('\n');
  const bad: string[] = [];
  // A field of a raw word may be all zeros however the word reads (`qw1 = 8` has page address 0).
  const zeroFromWord = runs.length > 0;
  if (e.address !== null && !hexDerivable(runs, e.address) && !(e.address === '0x0' && zeroFromWord)) bad.push(`address ${e.address}`);
  if (e.device !== null) {
    const [seg, bus, dev, fn] = e.device.split(/[:.]/).map((x) => parseInt(x, 16)) as [number, number, number, number];
    const rid = ((bus << 8) | (dev << 3) | fn).toString(16);
    let printed = e.device === '0000:00:00.0' && zeroFromWord;
    // `SSSS:BB:DD.F` (a segment of any width, as parsePciAddress takes it), `BB:DD.F`, `0xBB:0xDD.F`,
    // QEMU's `BB:DD:FF`: tried at every position a few characters before each colon (they overlap).
    const forms = [/([0-9a-f]{1,4}):(?:0x)?([0-9a-f]{1,2}):(?:0x)?([0-9a-f]{1,2})[.:](0?[0-7])/y, /()(?:0x)?([0-9a-f]{1,2}):(?:0x)?([0-9a-f]{1,2})[.:](0?[0-7])/y];
    const lower = text.toLowerCase();
    for (let c = lower.indexOf(':'); c !== -1 && !printed; c = lower.indexOf(':', c + 1)) {
      for (let i = Math.max(0, c - 9); i < c && !printed; i++) {
        for (const form of forms) {
          form.lastIndex = i;
          const m = form.exec(lower);
          if (!m) continue;
          const s = m[1] !== '' ? parseInt(m[1]!, 16) : 0;
          if (s === seg && parseInt(m[2]!, 16) === bus && parseInt(m[3]!, 16) === dev && Number(m[4]) === fn) printed = true;
        }
      }
    }
    // QEMU's traces print the bus and devfn in decimal.
    for (const m of text.matchAll(/bus\s+(0x[0-9a-fA-F]{1,2}|\d{1,3})\s+devfn\s+(0x[0-9a-fA-F]{1,2}|\d{1,3})/g)) {
      if (seg === 0 && Number(m[1]) === bus && Number(m[2]) === ((dev << 3) | fn)) printed = true;
    }
    // Raw words (descriptors, event entries, SIDs) hold the requester ID instead; QEMU may print it in decimal.
    const ridDecimal = String((bus << 8) | (dev << 3) | fn);
    if (!printed && !(seg === 0 && (has(runs, rid) || decimalRuns.some((r) => r.includes(ridDecimal))))) bad.push(`device ${e.device}`);
  }
  if (e.pasid !== null && !has(runs, e.pasid.toString(16)) && !decimalRuns.some((r) => r.includes(String(e.pasid)))) bad.push(`pasid ${e.pasid}`);
  if (e.reason !== null) {
    const c = e.reason.code;
    const ok = text.includes(e.reason.text) || has(runs, c.toString(16)) || decimalRuns.some((r) => r.includes(String(c))) || IMPLIED_REASON[e.format] === c;
    if (!ok) bad.push(`reason ${c}`);
  }
  if (e.iommu !== null && !sources.some((s) => s.toLowerCase().includes(e.iommu!.toLowerCase()))) bad.push(`iommu ${e.iommu}`);
  if (e.timestamp !== null && !sources.some((s) => s.includes(e.timestamp!))) bad.push(`timestamp ${e.timestamp}`);
  return bad;
}
