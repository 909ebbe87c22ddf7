import { type Diagnostic, type Position, type Range, SourceRange } from './diagnostic';
import { isKeyword } from './keywords';

export type TokenKind = 'keyword' | 'identifier' | 'number' | 'pci-address' | 'string' | 'punctuation';

export interface Token {
  readonly kind: TokenKind;
  /** The exact source text (numbers keep their radix and separators; values are decoded by the parser). */
  readonly text: string;
  readonly range: Range;
}

export interface LexResult {
  readonly tokens: Token[];
  /** Comments are kept apart from tokens: the parser skips them, the editor may colour them. */
  readonly comments: Range[];
  readonly diagnostics: Diagnostic[];
}

/** Past this many problems the file is probably not a topology file at all; say so once and stop. */
export const MAX_LEXICAL_DIAGNOSTICS = 200;

const PUNCTUATION_1 = '{}[](),;=:+-/@!<>';

// A word that looks like a PCI address (hex fields separated by ':' and '.'): validated field by field below,
// so that `00:20.0` is reported as a bad device number rather than as three stray tokens.
const PCI_LIKE = /(?:([0-9a-fA-F]+):)?([0-9a-fA-F]+):([0-9a-fA-F]+)\.([0-9a-fA-F]+)(?![\w.])/y;
const HEX_NUMBER = /^0[xX][0-9a-fA-F_]*$/;
const BIN_NUMBER = /^0[bB][01_]*$/;
const DEC_NUMBER = /^[0-9][0-9_]*[KMGT]?$/;

/** Splits a topology file into tokens. Never throws: every problem becomes a located diagnostic. */
export function lex(text: string): LexResult {
  const tokens: Token[] = [];
  const comments: Range[] = [];
  const diagnostics: Diagnostic[] = [];
  const n = text.length;
  let i = 0;
  // Positions are tracked as the scan passes newlines, which is several times cheaper than searching a
  // line table for every token. Only block comments span lines; they use the table.
  let line = 0;
  let lineStart = 0;
  let lineStarts: number[] | undefined;

  /** A range within the current line. */
  const range = (start: number, end: number): Range => new SourceRange(start, end, line, start - lineStart, line, end - lineStart);
  const multiLineRange = (start: number, end: number): Range => {
    lineStarts ??= computeLineStarts(text);
    const a = positionAt(lineStarts, start);
    const b = positionAt(lineStarts, end);
    return new SourceRange(start, end, a.line, a.character, b.line, b.character);
  };
  const report = (start: number, end: number, code: string, message: string): boolean => {
    if (diagnostics.length === MAX_LEXICAL_DIAGNOSTICS) {
      diagnostics.push({
        range: range(start, end),
        severity: 'error',
        code: 'too-many-errors',
        message: `more than ${MAX_LEXICAL_DIAGNOSTICS} lexical errors; is this a topology file?`,
      });
    }
    if (diagnostics.length > MAX_LEXICAL_DIAGNOSTICS) return false;
    diagnostics.push({ range: range(start, end), severity: 'error', code, message });
    return true;
  };
  const push = (kind: TokenKind, start: number, end: number): void => {
    tokens.push({ kind, text: text.slice(start, end), range: range(start, end) });
  };

  while (i < n) {
    const c = text.charCodeAt(i);
    // whitespace
    if (c === 10) {
      i++;
      line++;
      lineStart = i;
      continue;
    }
    if (c === 32 || c === 9 || c === 13 || c === 0xfeff) {
      i++;
      continue;
    }
    // comments: '#' and '//' to end of line, '/* ... */'
    if (c === 35 /* # */ || (c === 47 /* / */ && text.charCodeAt(i + 1) === 47)) {
      const start = i;
      while (i < n && text.charCodeAt(i) !== 10) i++;
      comments.push(range(start, i));
      continue;
    }
    if (c === 47 && text.charCodeAt(i + 1) === 42 /* * */) {
      const start = i;
      const close = text.indexOf('*/', i + 2);
      if (close < 0) {
        i = n;
        comments.push(multiLineRange(start, n));
        if (!report(start, start + 2, 'unterminated-comment', 'unterminated block comment: no closing */')) break;
      } else {
        i = close + 2;
        comments.push(multiLineRange(start, i));
        for (let j = text.indexOf('\n', start); j >= 0 && j < i; j = text.indexOf('\n', j + 1)) {
          line++;
          lineStart = j + 1;
        }
      }
      continue;
    }
    // strings
    if (c === 34 /* " */) {
      const start = i;
      i++;
      let closed = false;
      while (i < n) {
        const d = text.charCodeAt(i);
        if (d === 92 /* \ */ && i + 1 < n && text.charCodeAt(i + 1) !== 10) {
          i += 2;
          continue;
        }
        if (d === 10) break;
        i++;
        if (d === 34) {
          closed = true;
          break;
        }
      }
      if (!closed) {
        if (!report(start, i, 'unterminated-string', 'unterminated string: missing closing quote on this line')) break;
      } else {
        push('string', start, i);
      }
      continue;
    }
    // PCI addresses, which may start with a letter (ff:1f.7) or a digit (00:02.0)
    if (isHexDigit(c) && !isWordChar(text.charCodeAt(i - 1)) && hexRunEndsInColon(text, i)) {
      PCI_LIKE.lastIndex = i;
      const m = PCI_LIKE.exec(text);
      if (m) {
        const start = i;
        i = PCI_LIKE.lastIndex;
        const problem = checkPciAddress(m[1], m[2]!, m[3]!, m[4]!);
        if (problem) {
          if (!report(start, i, 'bad-pci-address', `${problem} in PCI address '${m[0]}'`)) break;
        } else {
          push('pci-address', start, i);
        }
        continue;
      }
    }
    // numbers
    if (c >= 48 && c <= 57) {
      const start = i;
      i++;
      while (i < n && isWordChar(text.charCodeAt(i))) i++;
      const problem = checkNumber(text, start, i);
      if (problem) {
        if (!report(start, i, 'bad-number', problem)) break;
      } else {
        push('number', start, i);
      }
      continue;
    }
    // identifiers and keywords
    if (isIdentifierStart(c)) {
      const start = i;
      i = identifierEnd(text, i);
      const word = text.slice(start, i);
      tokens.push({ kind: isKeyword(word) ? 'keyword' : 'identifier', text: word, range: range(start, i) });
      continue;
    }
    // punctuation
    const c2 = text.charCodeAt(i + 1);
    if ((c === 45 /* - */ && c2 === 62 /* > */) || (c === 46 /* . */ && c2 === 46)) {
      push('punctuation', i, i + 2);
      i += 2;
      continue;
    }
    if (PUNCTUATION_1.indexOf(text[i]!) >= 0) {
      push('punctuation', i, i + 1);
      i++;
      continue;
    }
    // anything else: one diagnostic per run of unexpected characters
    const start = i;
    const cp = text.codePointAt(i)!;
    i += cp > 0xffff ? 2 : 1;
    while (i < n && isUnexpected(text, i)) i += text.codePointAt(i)! > 0xffff ? 2 : 1;
    if (!report(start, i, 'unexpected-character', `unexpected character ${describeChar(cp)}`)) break;
  }
  return { tokens, comments, diagnostics };
}

function checkPciAddress(segment: string | undefined, bus: string, device: string, fn: string): string | undefined {
  if (segment !== undefined && segment.length > 4) return `segment '${segment}' has more than 4 hex digits`;
  if (bus.length > 2) return `bus '${bus}' has more than 2 hex digits`;
  if (device.length > 2) return `device '${device}' has more than 2 hex digits`;
  if (fn.length > 1) return `function '${fn}' has more than 1 digit`;
  if (parseInt(device, 16) > 0x1f) return `device 0x${device} is out of range (00-1f)`;
  if (parseInt(fn, 16) > 7) return `function ${fn} is out of range (0-7)`;
  return undefined;
}

/** `[A-Za-z_][A-Za-z0-9_]*(-[A-Za-z0-9_]+)*`: a hyphen continues a word only when a word character follows. */
function identifierEnd(text: string, i: number): number {
  const n = text.length;
  i++;
  for (;;) {
    while (i < n && isWordChar(text.charCodeAt(i))) i++;
    if (text.charCodeAt(i) === 45 /* - */ && isWordChar(text.charCodeAt(i + 1))) i += 2;
    else return i;
  }
}

/** A decimal number made only of digits and no suffix needs no further checks: the common case. */
function checkNumber(text: string, start: number, end: number): string | undefined {
  if (end - start <= 15) {
    let plain = true;
    for (let j = start; j < end && plain; j++) {
      const d = text.charCodeAt(j);
      plain = d >= 48 && d <= 57;
    }
    if (plain) return undefined;
  }
  return checkNumberWord(text.slice(start, end));
}

function checkNumberWord(word: string): string | undefined {
  if (HEX_NUMBER.test(word)) {
    const digits = word.slice(2).replace(/_/g, '');
    if (digits.length === 0) return `hexadecimal number '${word}' has no digits`;
    if (digits.replace(/^0+/, '').length > 16) return `number '${word}' does not fit in 64 bits`;
    return undefined;
  }
  if (BIN_NUMBER.test(word)) {
    const digits = word.slice(2).replace(/_/g, '');
    if (digits.length === 0) return `binary number '${word}' has no digits`;
    if (digits.replace(/^0+/, '').length > 64) return `number '${word}' does not fit in 64 bits`;
    return undefined;
  }
  if (DEC_NUMBER.test(word)) {
    const digits = word.replace(/[_KMGT]/g, '');
    if (digits.length > 20 || (digits.length === 20 && digits > '18446744073709551615')) {
      return `number '${word}' does not fit in 64 bits`;
    }
    return undefined;
  }
  if (/^0[xX]/.test(word)) return `malformed hexadecimal number '${word}'`;
  return `malformed number '${word}' (use 0x for hexadecimal; size suffixes are K, M, G, T)`;
}

/** Whether the run of hex digits starting at `i` is followed by ':', the only way a PCI address can start. */
function hexRunEndsInColon(text: string, i: number): boolean {
  let j = i;
  while (isHexDigit(text.charCodeAt(j))) j++;
  return text.charCodeAt(j) === 58;
}

function isHexDigit(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102);
}
function isIdentifierStart(c: number): boolean {
  return (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || c === 95;
}
function isWordChar(c: number): boolean {
  return isIdentifierStart(c) || (c >= 48 && c <= 57);
}
function isUnexpected(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c <= 32 || c === 35 || c === 34 || c === 47 || isWordChar(c)) return false;
  return !PUNCTUATION_1.includes(text[i]!) && text.slice(i, i + 2) !== '..';
}
function describeChar(cp: number): string {
  const hex = `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;
  return cp >= 0x21 && cp !== 0x7f && !(cp >= 0x80 && cp <= 0x9f) ? `'${String.fromCodePoint(cp)}' (${hex})` : hex;
}

export function computeLineStarts(text: string): number[] {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return starts;
}

export function positionAt(lineStarts: readonly number[], offset: number): Position {
  let lo = 0;
  let hi = lineStarts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (lineStarts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  return { line: lo, character: offset - lineStarts[lo]! };
}
