import { sizeName } from '../core/hw/walk-text';
import { formatPciAddress, pciFromRid } from '../core/pci';
import { plural } from '../core/plural';
import { U64 } from '../core/u64';
import { pasidCount, supportedAgaws } from '../core/vtd/cap';
import { pageTableLeaves, type PageTableFormat } from '../core/vtd/page-table';
import {
  CONTEXT_LEGACY,
  CONTEXT_SCALABLE,
  decodeEntry,
  IRTE_POSTED,
  IRTE_REMAPPED,
  PASID_ENTRY,
  PGTT_NAMES,
  rawWords,
} from '../core/vtd/structures';
import { contextAddress, domainPageTable, pasidTableOf } from '../core/driver/debugfs';
import { QI_LENGTH } from '../core/driver/qi';
import { pasidEntryAddress } from '../core/vtd/tables';
import type { VtdUnit } from '../core/vtd/unit';
import { type DebugfsDiagnostic, diagnosticText } from './debugfs';
import type { DebugfsImport, UnitValue } from './debugfs-import';
import { describeQiDescriptor, type PageGroupResponseEras } from './vtd-descriptors';

export { parseAddress, type StaleJson, type StepJson, walkImported, walkJson, type WalkJson, type WalkOutcome, type WalkRequest } from './debugfs-walk';

/**
 * What an imported debugfs dump holds, decoded: units and their capabilities, devices with their context
 * and PASID entries, the domains those entries point to with their mappings, the invalidation queue and
 * interrupt remapping entries. One JSON-able object (`iommu-lab import-debugfs --format json`) and its text
 * form; `walkImported` (debugfs-walk.ts, re-exported here) translates through the imported tables.
 */

/**
 * A unit as the dump shows it. What the dump does not hold is never given as a fact: a value the import
 * assumed (the model runs with it) is named in `assumed`, a value nothing in the dump implies is null and
 * named in `unknown`, each with why.
 */
export interface UnitReport {
  name: string;
  /** The PCI segment the unit serves (from the device files that name it; 0 when none does). */
  segment: number;
  regBase: string;
  version: string;
  mode: 'scalable' | 'legacy' | null;
  translationEnabled: boolean | null;
  rootTable: string | null;
  registersKnown: boolean;
  cap: string;
  ecap: string;
  /** From cap and ecap: assumed with them. */
  features: string[];
  /** The fields above whose values the import assumed, with why (the dump does not hold them). */
  assumed: Partial<Record<UnitValue | 'features', string>>;
  /** The fields above that are null because nothing in the dump tells them, with why. */
  unknown: Partial<Record<UnitValue, string>>;
  /** The invalidation queue as its file showed it: head and tail from its header, descriptors sized by ECAP.SMTS. */
  queue: { base: string; head: number; tail: number; descriptorSize: number; descriptors: { index: number; name: string; fields: Record<string, number | string>; status: number; eras?: PageGroupResponseEras }[] } | null;
}

/** Raw entry words (and other 64-bit values) are `0x` hex strings, as in every JSON the CLI prints (see WalkJson). */
export interface PasidReport {
  pasid: number;
  raw: string[];
  type: string;
  did: number;
  fields: Record<string, number | boolean | string>;
  /** The domain its page table belongs to (see `domains`), if it has one. */
  domain: string | null;
}

export interface DeviceReport {
  /** SSSS:BB:DD.F; the segment is the unit's (assumed with it when no device file names it). */
  device: string;
  unit: string;
  /** The device's context entry; null when it is not present, or unknown (see `unknown`). */
  context: { raw: string[]; fields: Record<string, number | boolean | string> } | null;
  pasids: PasidReport[];
  /** As UnitReport's: `segment` when the unit's is assumed. */
  assumed: { segment?: string };
  /** As UnitReport's: `context` when the dump has no context table of the unit to tell. */
  unknown: { context?: string };
}

export interface MappingRange {
  iova: string;
  output: string;
  size: string;
  pages: number;
  pageSize: string;
  access: string;
}

export interface DomainReport {
  id: string;
  unit: string;
  did: number;
  format: PageTableFormat;
  levels: number;
  root: string;
  users: string[];
  /** Hex, like every byte count that can pass 32 bits. */
  mappedBytes: string;
  ranges: MappingRange[];
  /** Ranges not listed (the report keeps the first MAX_RANGES). */
  moreRanges: number;
}

export interface InterruptReport {
  unit: string;
  kind: 'remapped' | 'posted';
  table: string | null;
  entries: { index: number; source: string; fields: Record<string, number | boolean | string> }[];
}

export interface DebugfsReport {
  units: UnitReport[];
  devices: DeviceReport[];
  domains: DomainReport[];
  interrupts: InterruptReport[];
  diagnostics: readonly DebugfsDiagnostic[];
  summary: { units: number; devices: number; pasidEntries: number; domains: number; mappedBytes: string; unrecognisedLines: number };
}

const MAX_RANGES = 512;
const MAX_DESCRIPTORS = 16;
const hex = (n: number) => '0x' + n.toString(16);
/** An entry's words as `0x` + 16 hex digits each, lowest first. */
const hexWords = (w: readonly number[], n: number) => rawWords(w, n).map((x) => '0x' + x);

function features(unit: VtdUnit): string[] {
  const c = unit.cap;
  const e = unit.ecap;
  const out = [`${2 ** (4 + 2 * c.nd)} domain IDs`, `address widths ${supportedAgaws(c).join('/')} (MGAW ${c.mgaw + 1})`];
  if (c.sllps) out.push(`second-level ${[c.sllps & 1 && '2M', c.sllps & 2 && '1G'].filter(Boolean).join('/')} pages`);
  if (c.cm) out.push('caching mode (a virtual IOMMU)');
  if (e.smts) out.push('scalable mode');
  if (e.flts) out.push(`first level${c.fl1gp ? ' with 1G pages' : ''}${c.fl5lp ? ', 5-level' : ''}`);
  if (e.slts) out.push('second level');
  if (e.nest) out.push('nested translation');
  if (e.pasid) out.push(`${Math.log2(pasidCount(e))}-bit PASIDs`);
  if (e.prs) out.push('page requests');
  if (e.dt) out.push('device TLBs (ATS)');
  if (e.pt) out.push('pass-through');
  if (e.qi) out.push('queued invalidation');
  if (e.ir) out.push(`interrupt remapping${e.eim ? ' (x2APIC)' : ''}`);
  if (c.pi) out.push('posted interrupts');
  if (e.slads) out.push('second-level A/D bits');
  return out;
}

/** A queued descriptor's fields, with its address fields as byte addresses (the raw fields hold bits 63:2 or 63:12). */
function descriptorFields(words: readonly U64[]): { name: string; fields: Record<string, number | string>; eras?: PageGroupResponseEras } {
  const d = describeQiDescriptor([...words]);
  const fields: Record<string, number | string> = { ...d.fields };
  if (d.statusAddress !== undefined) fields.ADDR = d.statusAddress;
  else if (d.address !== null) fields.ADDR = d.address;
  // A page group response reads differently in VT-d rev 3.x (private data) and rev 4.0 (reserved bits).
  return { name: d.name, fields, ...(d.eras ? { eras: d.eras } : {}) };
}

/** What a page group response's rev 3.x private data and rev 4.0 reserved bits are, when it has any. */
function erasText(e: PageGroupResponseEras | undefined): string {
  if (!e) return '';
  const parts: string[] = [];
  if (e.rev3.privateData) parts.push(`rev 3.x private data ${e.rev3.privateData.join(' ')}`);
  if (e.rev3.reserved.length) parts.push(`rev 3.x reserved: ${e.rev3.reserved.join(', ')}`);
  if (e.rev4.reserved.length) parts.push(`rev 4.0 reserved: ${e.rev4.reserved.join(', ')}`);
  return parts.length ? ` (${parts.join('; ')})` : '';
}

function unitReport(imp: DebugfsImport, i: number): UnitReport {
  const { unit, registersKnown, assumed, unknown, qiStatus, queue: q } = imp.units[i]!;
  let queue: UnitReport['queue'] = null;
  if (qiStatus && q) {
    const size = 2 ** q.shift;
    const descriptors: NonNullable<UnitReport['queue']>['descriptors'] = [];
    // The last descriptors before the tail the file printed: what the driver submitted most recently.
    for (let k = 1; k <= Math.min(MAX_DESCRIPTORS, QI_LENGTH); k++) {
      const index = (((q.tail - k) % QI_LENGTH) + QI_LENGTH) % QI_LENGTH;
      const at = q.base + index * size;
      const w: U64[] = [];
      for (let j = 0; j < size / 8; j++) w.push(new U64(unit.memory.readHi(at + j * 8), unit.memory.readLo(at + j * 8)));
      if (w.every((x) => x.isZero())) continue;
      descriptors.unshift({ index, ...descriptorFields(w), status: qiStatus[index] ?? 0 });
    }
    queue = { base: hex(q.base), head: q.head, tail: q.tail, descriptorSize: size, descriptors };
  }
  return {
    name: unit.name,
    segment: unit.segment,
    regBase: hex(unit.regBase),
    version: `${unit.version[0]}.${unit.version[1]}`,
    mode: unknown.mode ? null : unit.scalableMode ? 'scalable' : 'legacy',
    translationEnabled: unknown.translationEnabled ? null : unit.translationEnabled,
    rootTable: unknown.rootTable ? null : hex(unit.rootTableAddress),
    registersKnown,
    cap: unit.capRaw.toString(),
    ecap: unit.ecapRaw.toString(),
    features: features(unit),
    assumed: { ...assumed, ...(assumed.cap || assumed.ecap ? { features: [assumed.cap, assumed.ecap].filter((x, k, a) => x && a.indexOf(x) === k).join('; ') } : {}) },
    unknown: { ...unknown },
    queue,
  };
}

function words(unit: VtdUnit, addr: number, qwords: number): number[] {
  const w: number[] = [];
  for (let q = 0; q < qwords; q++) w.push(unit.memory.readLo(addr + q * 8), unit.memory.readHi(addr + q * 8));
  return w;
}

interface DomainKey {
  unit: VtdUnit;
  did: number;
  format: PageTableFormat;
  levels: number;
  root: number;
}

function domainId(k: DomainKey): string {
  return `${k.unit.name} DID ${k.did} ${k.format} @${hex(k.root)}`;
}

function accessText(format: PageTableFormat, hi: number, lo: number): string {
  const rwx = (r: boolean, w: boolean, x: boolean) => `${r ? 'r' : '-'}${w ? 'w' : '-'}${x ? 'x' : '-'}`;
  if (format === 'second-level') return rwx((lo & 1) !== 0, (lo & 2) !== 0, (lo & 4) !== 0) + (lo & 0x800 ? ' snoop' : '');
  return rwx(true, (lo & 2) !== 0, (hi & 0x8000_0000) === 0) + (lo & 4 ? ' user' : ' supervisor');
}

function domainReport(k: DomainKey, users: string[]): DomainReport {
  const ranges: MappingRange[] = [];
  let mapped = 0;
  let more = 0;
  let cur: { iova: number; output: number; bytes: number; pages: number; size: number; access: string } | undefined;
  const flush = () => {
    if (!cur) return;
    if (ranges.length < MAX_RANGES) {
      ranges.push({ iova: hex(cur.iova), output: hex(cur.output), size: hex(cur.bytes), pages: cur.pages, pageSize: sizeName(cur.size), access: cur.access });
    } else more++;
  };
  for (const leaf of pageTableLeaves(k.unit.memory, k.root, k.levels, k.format)) {
    const last = leaf.path[leaf.path.length - 1]!;
    const access = accessText(k.format, last.hi, last.lo);
    mapped += leaf.size;
    if (cur && cur.iova + cur.bytes === leaf.iova && cur.output + cur.bytes === leaf.output && cur.size === leaf.size && cur.access === access) {
      cur.bytes += leaf.size;
      cur.pages++;
      continue;
    }
    flush();
    cur = { iova: leaf.iova, output: leaf.output, bytes: leaf.size, pages: 1, size: leaf.size, access };
  }
  flush();
  return { id: domainId(k), unit: k.unit.name, did: k.did, format: k.format, levels: k.levels, root: hex(k.root), users, mappedBytes: hex(mapped), ranges, moreRanges: more };
}

export function describeImport(imp: DebugfsImport): DebugfsReport {
  const units = imp.units.map((_, i) => unitReport(imp, i));
  const domains = new Map<string, { key: DomainKey; users: string[] }>();
  const useDomain = (key: DomainKey, user: string): string => {
    const id = domainId(key);
    const d = domains.get(id) ?? domains.set(id, { key, users: [] }).get(id)!;
    d.users.push(user);
    return id;
  };
  const devices: DeviceReport[] = [];
  let pasidEntries = 0;
  for (const dev of imp.devices) {
    const unit = imp.units.find((u) => u.unit.name === dev.unit)!.unit;
    const sm = unit.scalableMode;
    const ctxAt = contextAddress(unit.memory, unit.rootTableAddress, sm, dev.sid >> 8, dev.sid & 0xff);
    const facts = imp.units.find((u) => u.unit === unit)!;
    const report: DeviceReport = { device: dev.device, unit: unit.name, context: null, pasids: [], assumed: {}, unknown: {} };
    if (facts.assumed.segment) report.assumed.segment = facts.assumed.segment;
    devices.push(report);
    if (!imp.dump.translations.some((t) => t.unit === unit.name)) {
      report.unknown.context = imp.dump.disabled.some((d) => d.unit === unit.name)
        ? `dmar_translation_struct says DMA remapping is not enabled on ${unit.name}`
        : `the dump has no dmar_translation_struct for ${unit.name}`;
      continue;
    }
    if (ctxAt === undefined) continue;
    const layout = sm ? CONTEXT_SCALABLE : CONTEXT_LEGACY;
    const cw = words(unit, ctxAt, layout.words);
    report.context = { raw: hexWords(cw, layout.words), fields: decodeEntry(layout, cw) };
    if (!(cw[0]! & 1)) continue;
    if (!sm) {
      const tt = (cw[0]! >>> 2) & 3;
      const pt = domainPageTable(unit, dev.sid, 0);
      if (pt && (tt === 0 || tt === 1)) useDomain({ unit, did: (cw[2]! >>> 8) & 0xffff, format: 'second-level', levels: pt.levels, root: pt.pgd }, dev.device);
      continue;
    }
    const dir = (cw[1]! & 0xf_ffff) * 0x1_0000_0000 + ((cw[0]! & 0xffff_f000) >>> 0);
    const dirSize = 2 ** (((cw[0]! >>> 9) & 7) + 7);
    for (let d = 0; d < dirSize; d++) {
      const table = pasidTableOf(unit.memory, dir + d * 8);
      if (table === undefined) continue;
      for (let i = 0; i < 64; i++) {
        const at = pasidEntryAddress(table, i);
        const pw = words(unit, at, 8);
        if (!(pw[0]! & 1)) continue;
        pasidEntries++;
        const pasid = d * 64 + i;
        const fields = decodeEntry(PASID_ENTRY, pw);
        const pgtt = fields.PGTT as number;
        const did = fields.DID as number;
        let domain: string | null = null;
        const aw = fields.AW as number;
        const user = `${dev.device} PASID ${hex(pasid)}`;
        if (pgtt === 1) domain = useDomain({ unit, did, format: 'first-level', levels: (fields.FLPM as number) === 1 ? 5 : 4, root: parseInt(fields.FLPTPTR as string, 16) }, user);
        else if (pgtt === 2 || pgtt === 3) domain = useDomain({ unit, did, format: 'second-level', levels: aw + 2, root: parseInt(fields.SLPTPTR as string, 16) }, user);
        report.pasids.push({ pasid, raw: hexWords(pw, 3), type: PGTT_NAMES[pgtt] ?? `PGTT ${pgtt} (reserved)`, did, fields, domain });
      }
    }
  }
  const domainReports = [...domains.values()].map((d) => domainReport(d.key, d.users));
  const interrupts = interruptReports(imp);
  return {
    units,
    devices,
    domains: domainReports,
    interrupts,
    diagnostics: imp.diagnostics,
    summary: {
      units: units.length,
      devices: devices.length,
      pasidEntries,
      domains: domainReports.length,
      mappedBytes: hex(domainReports.reduce((s, d) => s + parseInt(d.mappedBytes, 16), 0)),
      unrecognisedLines: imp.dump.unrecognisedLines,
    },
  };
}

function interruptReports(imp: DebugfsImport): InterruptReport[] {
  return imp.dump.interrupts.map((d) => ({
    unit: d.unit,
    kind: d.kind,
    table: d.table === undefined ? null : hex(d.table),
    entries: d.entries.map((e) => ({
      index: e.index,
      // The source ID is a requester in the unit's segment.
      source: formatPciAddress(pciFromRid(e.sid, imp.units.find((u) => u.unit.name === d.unit)?.unit.segment ?? 0)),
      fields: decodeEntry(d.kind === 'posted' ? IRTE_POSTED : IRTE_REMAPPED, [e.low.lo, e.low.hi, e.high.lo, e.high.hi]),
    })),
  }));
}

// ---------------------------------------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------------------------------------

function fieldList(fields: Record<string, number | boolean | string>, only?: readonly string[]): string {
  return Object.entries(fields)
    .filter(([k, v]) => (!only || only.includes(k)) && v !== false && v !== 0 && v !== '0x0')
    .map(([k, v]) => (v === true ? k : `${k}=${typeof v === 'number' && v > 9 ? '0x' + v.toString(16) : v}`))
    .join(' ');
}

/**
 * A unit's first lines: what the dump shows of it, then what the import assumed and what is unknown, each
 * with why, so that no guess reads as a fact.
 */
function unitLines(u: UnitReport): string[] {
  const segment = `PCI segment ${u.segment.toString(16).padStart(4, '0')}`;
  // Each value as the text shows it, in this order; values that share a reason read as one phrase.
  const items: { keys: (UnitValue | 'features')[]; text: string; unknown: string }[] = [
    { keys: ['name'], text: `the name ${u.name}`, unknown: 'the name' },
    { keys: ['version', 'regBase'], text: `VT-d ${u.version} at ${u.regBase}`, unknown: '' },
    { keys: ['version'], text: `VT-d ${u.version}`, unknown: 'the version' },
    { keys: ['regBase'], text: `registers at ${u.regBase}`, unknown: 'the register base' },
    { keys: ['segment'], text: segment, unknown: 'the PCI segment' },
    { keys: ['mode'], text: `${u.mode} mode`, unknown: 'the mode' },
    { keys: ['translationEnabled'], text: `translation ${u.translationEnabled ? 'on' : 'OFF'}`, unknown: 'whether translation is on' },
    { keys: ['rootTable'], text: `root table ${u.rootTable}`, unknown: 'the root table' },
    { keys: ['cap', 'ecap'], text: `cap ${u.cap} ecap ${u.ecap}`, unknown: '' },
    { keys: ['cap'], text: `cap ${u.cap}`, unknown: 'the capabilities' },
    { keys: ['ecap'], text: `ecap ${u.ecap}`, unknown: 'the extended capabilities' },
  ];
  const why = (k: UnitValue | 'features') => (k === 'features' ? undefined : (u.unknown[k as UnitValue] ?? u.assumed[k]));
  const unknown = (k: UnitValue | 'features') => k !== 'features' && u.unknown[k as UnitValue] !== undefined;
  const done = new Set<string>();
  const facts: string[] = [];
  const notFacts = new Map<string, { assumed: string[]; unknown: string[] }>();
  for (const item of items) {
    if (item.keys.some((k) => done.has(k))) continue;
    const reasons = item.keys.map(why);
    // A pair is one phrase only when both halves are facts, or both were assumed for one reason.
    if (item.keys.length > 1 && !(reasons.every((r) => r === undefined) || (reasons[0] !== undefined && reasons.every((r) => r === reasons[0]) && !item.keys.some(unknown)))) continue;
    for (const k of item.keys) done.add(k);
    const reason = reasons[0];
    if (reason === undefined) {
      // cap and ecap have a line of their own; the segment is worth saying only when it is not 0.
      if (item.keys[0] === 'cap' || (item.keys[0] === 'segment' && u.segment === 0) || item.keys[0] === 'name') continue;
      facts.push(item.text);
      continue;
    }
    const group = notFacts.get(reason) ?? notFacts.set(reason, { assumed: [], unknown: [] }).get(reason)!;
    if (unknown(item.keys[0]!)) group.unknown.push(item.unknown);
    else group.assumed.push(item.text);
  }
  const out = [`${u.name}${facts.length > 0 ? ': ' + facts.join(', ') : ''}`];
  for (const [reason, g] of notFacts) if (g.assumed.length > 0) out.push(`  assumed (${reason}): ${g.assumed.join(', ')}`);
  for (const [reason, g] of notFacts) if (g.unknown.length > 0) out.push(`  unknown (${reason}): ${g.unknown.join(', ')}`);
  if (!u.assumed.cap && !u.assumed.ecap) out.push(`  cap ${u.cap} ecap ${u.ecap}`);
  out.push(`  ${u.assumed.features ? 'assumed features: ' : ''}${u.features.join(', ')}`);
  return out;
}

/** The report in words; `input` names the dump as a whole in its diagnostics (see diagnosticText). */
export function reportText(r: DebugfsReport, input: string): string[] {
  const out: string[] = [];
  for (const u of r.units) {
    out.push(...unitLines(u));
    if (u.queue) {
      out.push(`  invalidation queue at ${u.queue.base}, ${u.queue.descriptorSize}-byte descriptors, head ${u.queue.head}, tail ${u.queue.tail}${u.queue.head === u.queue.tail ? ' (idle)' : ' (NOT drained)'}`);
      for (const d of u.queue.descriptors) out.push(`    [${String(d.index).padStart(3)}] ${d.name} ${fieldList(d.fields)}${erasText(d.eras)}`);
    }
  }
  out.push('');
  for (const d of r.devices) {
    out.push(`${d.device} (${d.unit}${d.assumed.segment ? ', PCI segment assumed' : ''})`);
    if (!d.context) {
      out.push(d.unknown.context ? `  context entry unknown (${d.unknown.context})` : '  no context entry');
      continue;
    }
    out.push(`  context ${d.context.raw.join(' ')}: ${fieldList(d.context.fields)}`);
    for (const p of d.pasids) {
      out.push(`  PASID ${hex(p.pasid)} ${p.type}, DID ${p.did}: ${fieldList(p.fields, ['FPD', 'AW', 'SLPTPTR', 'FLPTPTR', 'FLPM', 'SRE', 'WPE', 'SSADE', 'PGSNP', 'PWSNP', 'EAFE'])}`);
    }
  }
  out.push('');
  for (const d of r.domains) {
    out.push(`domain ${d.id}: ${d.levels}-level, ${humanBytes(parseInt(d.mappedBytes, 16))} mapped`);
    out.push(`  used by ${d.users.join(', ')}`);
    for (const m of d.ranges) out.push(`  ${m.iova.padStart(14)} -> ${m.output.padEnd(14)} ${humanBytes(parseInt(m.size, 16)).padStart(9)} in ${m.pages} x ${m.pageSize} ${m.access}`);
    if (d.moreRanges) out.push(`  ... and ${d.moreRanges} more ranges (see --format json)`);
  }
  for (const i of r.interrupts) {
    if (i.entries.length === 0) continue;
    out.push('', `${i.unit} ${i.kind} interrupts (table ${i.table ?? 'not enabled'}):`);
    for (const e of i.entries) out.push(`  [${e.index}] from ${e.source}: ${fieldList(e.fields)}`);
  }
  const s = r.summary;
  out.push('', `${plural(s.units, 'unit')}, ${plural(s.devices, 'device')}, ${plural(s.pasidEntries, 'PASID entry', 'PASID entries')}, ${plural(s.domains, 'domain')}, ${humanBytes(parseInt(s.mappedBytes, 16))} mapped; ${plural(s.unrecognisedLines, 'line')} not understood`);
  for (const d of r.diagnostics) out.push(diagnosticText(d, input));
  return out;
}

function humanBytes(n: number): string {
  for (const [unit, size] of [['GiB', 2 ** 30], ['MiB', 2 ** 20], ['KiB', 1024]] as const) {
    if (n >= size) return n % size === 0 ? `${n / size} ${unit}` : `${(n / size).toFixed(2)} ${unit}`;
  }
  return `${n} B`;
}
