import type { DmaRequest, StaleUse, TranslationOk, TranslationResult, WalkStep } from '../core/hw/types';
import { describeWalk } from '../core/hw/walk-text';
import { formatPciAddress, parsePciAddress, pciRid } from '../core/pci';
import { U64 } from '../core/u64';
import type { DebugfsImport } from './debugfs-import';

/**
 * Walks through an imported debugfs dump (`iommu-lab walk`, the extension's walk command): a probe of the
 * imported unit with its trace, the notes on what the walk used that debugfs does not show, and the JSON form.
 * debugfs-report.ts re-exports it with the report.
 */

const hex = (n: number) => '0x' + n.toString(16);


export interface WalkRequest {
  /** `SSSS:BB:DD.F` or `BB:DD.F`. */
  readonly device: string;
  /** Hex (`0x` optional) or decimal; up to 64 bits. */
  readonly address: string;
  readonly pasid?: number;
  readonly write?: boolean;
  readonly exec?: boolean;
  readonly priv?: boolean;
}

export type WalkOutcome =
  | { ok: true; unit: string; device: string; request: DmaRequest; result: TranslationResult; notes: string[]; text: string[] }
  | { ok: false; error: string };

/** Parses an address as a user types it: `0x` hex, plain hex with a-f digits, or decimal. */
export function parseAddress(text: string): U64 | undefined {
  const t = text.trim().replace(/_/g, '');
  if (/^0x[0-9a-f]{1,16}$/i.test(t) || /^[0-9a-f]*[a-f][0-9a-f]*$/i.test(t)) return U64.fromHex(t.replace(/^0x/i, ''));
  if (/^\d{1,20}$/.test(t)) {
    const big = BigInt(t);
    return big < 2n ** 64n ? U64.fromBigInt(big) : undefined;
  }
  return undefined;
}

/** Translates through the imported tables with no side effect (a probe), with the full trace. */
export function walkImported(imp: DebugfsImport, w: WalkRequest): WalkOutcome {
  const a = parsePciAddress(w.device);
  if (!a) return { ok: false, error: `'${w.device}' is not a PCI address (SSSS:BB:DD.F)` };
  const device = formatPciAddress(a);
  const known = imp.devices.find((d) => d.segment === a.segment && d.sid === pciRid(a));
  if (!known) return { ok: false, error: `${device} is not in the dump (devices: ${imp.devices.map((d) => d.device).join(', ') || 'none'})` };
  const addr = parseAddress(w.address);
  if (!addr) return { ok: false, error: `'${w.address}' is not an address (hex with 0x, or decimal, up to 64 bits)` };
  if (w.pasid !== undefined && !(Number.isInteger(w.pasid) && w.pasid >= 0 && w.pasid < 2 ** 20)) return { ok: false, error: `PASID ${w.pasid} is out of range (0..0xfffff)` };
  const { unit, unknown } = imp.units.find((u) => u.unit.name === known.unit)!;
  // A walk starts at GSTS.TES and the root table: a dump that tells neither has nothing to walk through.
  const lacking = unknown.translationEnabled ?? (unit.translationEnabled ? unknown.rootTable : undefined);
  if (lacking !== undefined) return { ok: false, error: `${device} cannot be walked: ${lacking} (a walk starts at its root table)` };
  const exact = addr.hi < 0x20_0000 ? addr.hi * 0x1_0000_0000 + addr.lo : undefined;
  const request: DmaRequest = { sid: pciRid(a), pasid: w.pasid, addr: exact ?? addr, write: w.write ?? false, exec: w.exec ?? false, priv: w.priv ?? false };
  const result = unit.probe(request, { trace: true });
  const notes = walkNotes(imp, result);
  // The notes go before the result line, which stays last.
  const lines = describeWalk(request, `${device} on ${unit.name}`, result);
  return { ok: true, unit: unit.name, device, request, result, notes, text: [...lines.slice(0, -1), ...notes.map((n) => `Note: ${n}`), lines[lines.length - 1]!] };
}

/**
 * A walk as `iommu-lab walk --format json` prints it. Every address and 64-bit value is a `0x` hex string
 * (lowercase; raw entry words zero-padded to 16 digits, as debugfs prints them), one field per value; the
 * request's fields are named as decode-log's events name them (pasid, address, access).
 */
export interface WalkJson {
  unit: string;
  device: string;
  request: { pasid: number | null; address: string; access: 'read' | 'write' | 'exec'; priv: boolean };
  result: (
    | { ok: true; output: string; pageSize: number; perms: TranslationOk['perms']; source: TranslationOk['source']; did: number | null }
    | { ok: false; reason: number; reasonText: string; recorded: boolean }
  ) & { reads: number; stale: StaleJson | null; trace: StepJson[] };
  /** What the walk used that debugfs does not show (see walkImported). */
  notes: string[];
}

export type StepJson = Omit<WalkStep, 'raw' | 'nestedTrace'> & { raw: string[]; nestedTrace?: StepJson[] };
export type StaleJson = Omit<StaleUse, 'cached' | 'memory'> & { cached: string[]; memory: string[] };

/** A raw 64-bit word (16 hex digits, as WalkStep and StaleUse hold it) as a hex string. */
const word = (w: string) => (w.startsWith('0x') ? w : '0x' + w);

function stepJson(s: WalkStep): StepJson {
  const { nestedTrace, ...rest } = s;
  return { ...rest, raw: s.raw.map(word), ...(nestedTrace ? { nestedTrace: nestedTrace.map(stepJson) } : {}) };
}

function staleJson(s: StaleUse | undefined): StaleJson | null {
  return s ? { ...s, cached: s.cached.map(word), memory: s.memory.map(word) } : null;
}

/** The JSON form of a walk (WalkJson). */
export function walkJson(w: Extract<WalkOutcome, { ok: true }>): WalkJson {
  const q = w.request;
  const r = w.result;
  const address = typeof q.addr === 'number' ? hex(q.addr) : q.addr.toString();
  const common = { reads: r.reads, stale: staleJson(r.stale), trace: (r.trace ?? []).map(stepJson) };
  return {
    unit: w.unit,
    device: w.device,
    request: { pasid: q.pasid ?? null, address, access: q.write ? 'write' : q.exec ? 'exec' : 'read', priv: q.priv ?? false },
    result: r.ok
      ? { ok: true, output: r.output, pageSize: r.pageSize, perms: r.perms, source: r.source, did: r.did ?? null, ...common }
      : { ok: false, reason: r.reason, reasonText: r.reasonText, recorded: r.recorded, ...common },
    notes: w.notes,
  };
}

/** What a walk through an import used that debugfs did not show: PASID directory entries. */
function walkNotes(imp: DebugfsImport, result: TranslationResult): string[] {
  const notes: string[] = [];
  for (const step of result.trace ?? []) {
    if (step.structure !== 'pasid-dir-entry' || step.entryAddress === undefined) continue;
    const p = imp.pasidTables.find((t) => hex(t.dirEntryAddress) === step.entryAddress);
    if (!p) continue;
    if (p.from) notes.push(`the PASID directory entry at ${step.entryAddress} is from the kernel log (${p.from.file}:${p.from.line}); debugfs does not print it`);
    else {
      notes.push(
        `debugfs does not print the PASID directory: the entry at ${step.entryAddress} and the PASID table at ${hex(p.table)} were placed by the import (the PASID entry in it is as dumped); a dmesg with CONFIG_DMAR_DEBUG's table dump for ${p.device} gives the real addresses`,
      );
    }
  }
  return notes;
}
