import { U64 } from '../core/u64';
import { formatPciAddress, pciFromRid } from '../core/pci';

/**
 * Number helpers for log text. Addresses stay strings (they can use all 64 bits); small fields become
 * numbers; register and descriptor words become `U64` so that their bits can be decoded exactly.
 */

const HEX_DIGITS = /^[0-9a-fA-F]+$/;

/**
 * `0x` + lowercase hex without leading zeros, whatever the log printed (`%llx`, `0x%016llx`, `0X...`).
 * Returns null for text that is not hex or is wider than 64 bits.
 */
export function normalizeHex(text: string): string | null {
  let s = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (s.length === 0 || !HEX_DIGITS.test(s)) return null;
  let i = 0;
  while (i < s.length - 1 && s.charCodeAt(i) === 48) i++;
  s = s.slice(i);
  if (s.length > 16) return null;
  return '0x' + s.toLowerCase();
}

/** A hex field of at most 53 bits as a number (`0x` optional); undefined if it is not hex or too wide. */
export function hexNumber(text: string): number | undefined {
  const s = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (s.length === 0 || s.length > 13 || !HEX_DIGITS.test(s)) return undefined;
  return parseInt(s, 16);
}

/** A 64-bit word from hex text (`0x` optional); undefined if it is not hex or wider than 64 bits. */
export function hexWord(text: string): U64 | undefined {
  // U64.fromHex accepts `_` separators and is slower; log words are plain hex, and there are many.
  const s = text.startsWith('0x') || text.startsWith('0X') ? text.slice(2) : text;
  if (s.length === 0 || s.length > 16 || !HEX_DIGITS.test(s)) return undefined;
  const cut = s.length - 8;
  return cut > 0 ? new U64(parseInt(s.slice(0, cut), 16), parseInt(s.slice(cut), 16)) : new U64(0, parseInt(s, 16));
}

/** A requester ID (bus << 8 | devfn) as `SSSS:BB:DD.F`. */
export function ridToDevice(rid: number, segment = 0): string {
  return formatPciAddress(pciFromRid(rid, segment));
}

/** `SSSS:BB:DD.F` from hex bus, device and function texts as logs print them (with or without `0x`). */
export function bdfToDevice(bus: string, dev: string, fn: string, segment?: string): string | null {
  const b = hexNumber(bus);
  const d = hexNumber(dev);
  const f = parseInt(fn, 10);
  const s = segment === undefined ? 0 : hexNumber(segment);
  if (b === undefined || d === undefined || s === undefined || b > 0xff || d > 0x1f || !(f >= 0 && f <= 7) || s > 0xffff) return null;
  return formatPciAddress({ segment: s, bus: b, device: d, fn: f });
}
