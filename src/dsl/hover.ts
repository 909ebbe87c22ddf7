import { parsePciAddress, pciRid } from '../core/pci';
import type { LexResult, Token } from './lexer';
import type { Range } from './diagnostic';

export interface HoverInfo {
  readonly range: Range;
  /** Markdown. */
  readonly contents: string;
}

const SIZE_SHIFT: Record<string, number> = { K: 10, M: 20, G: 30, T: 40 };

/** What the editor shows when the pointer rests on a token: decoded PCI addresses and numbers. */
export function hoverAt(lexed: LexResult, offset: number): HoverInfo | undefined {
  const token = tokenAt(lexed.tokens, offset);
  if (!token) return undefined;
  if (token.kind === 'pci-address') {
    const a = parsePciAddress(token.text);
    if (!a) return undefined;
    const rid = pciRid(a);
    return {
      range: token.range,
      contents: [
        `**PCI function** \`${token.text}\``,
        '',
        `segment \`0x${a.segment.toString(16).padStart(4, '0')}\` · bus \`0x${a.bus.toString(16).padStart(2, '0')}\` · ` +
          `device \`0x${a.device.toString(16).padStart(2, '0')}\` · function \`${a.fn}\``,
        '',
        `RID (source-id) \`0x${rid.toString(16).padStart(4, '0')}\` · devfn \`0x${((a.device << 3) | a.fn).toString(16).padStart(2, '0')}\``,
      ].join('\n'),
    };
  }
  if (token.kind === 'number') {
    const value = numberValue(token.text);
    if (value === undefined) return undefined;
    return {
      range: token.range,
      contents: `\`0x${value.toString(16)}\` · \`${value.toString(10)}\`${describeSize(value)}`,
    };
  }
  return undefined;
}

/** The exact value of a number token, as a bigint (numbers may use all 64 bits). */
export function numberValue(text: string): bigint | undefined {
  const clean = text.replace(/_/g, '');
  try {
    if (/^0[xX]/.test(clean) || /^0[bB]/.test(clean)) return BigInt(clean);
    const suffix = clean.at(-1)!;
    const shift = SIZE_SHIFT[suffix];
    return shift === undefined ? BigInt(clean) : BigInt(clean.slice(0, -1)) << BigInt(shift);
  } catch {
    return undefined;
  }
}

function describeSize(v: bigint): string {
  for (const [unit, shift] of [['TiB', 40n], ['GiB', 30n], ['MiB', 20n], ['KiB', 10n]] as const) {
    const size = 1n << shift;
    if (v >= size && v % size === 0n) return ` · ${v / size} ${unit}`;
  }
  return '';
}

function tokenAt(tokens: readonly Token[], offset: number): Token | undefined {
  let lo = 0;
  let hi = tokens.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    const t = tokens[mid]!;
    if (offset < t.range.startOffset) hi = mid - 1;
    else if (offset >= t.range.endOffset) lo = mid + 1;
    else return t;
  }
  return undefined;
}
