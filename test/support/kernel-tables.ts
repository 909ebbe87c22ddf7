// The facts the tests take from the kernel's sources, read from the fact files of test/fixtures/kernel/ (each
// names the source file, version and lines it was read from), and the kernel's fault-reason lookup
// (dmar_get_fault_reason) written out from the source: the tests compare the model against these, never
// against the model's own functions.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/** One `[name] where` section of a fact file: its lines, each with its line number for messages. */
interface Section {
  readonly name: string;
  readonly lines: { readonly text: string; readonly at: string }[];
}

/**
 * The sections of a fact file: `#` lines and blank lines are comments; `[name] ...` starts a section; lines
 * before the first section form the section named ''.
 */
function sections(root: string, fixture: string): Map<string, Section> {
  const text = readFileSync(join(root, 'test/fixtures/kernel', fixture), 'utf8');
  const out = new Map<string, Section>();
  let current: Section = { name: '', lines: [] };
  text.split('\n').forEach((line, i) => {
    if (line === '' || line.startsWith('#')) return;
    const head = /^\[([^\]]+)\]/.exec(line);
    if (head) {
      current = { name: head[1]!, lines: [] };
      if (out.has(current.name)) throw new Error(`${fixture}:${i + 1}: section [${current.name}] again`);
      out.set(current.name, current);
      return;
    }
    if (!out.has(current.name)) out.set(current.name, current);
    current.lines.push({ text: line, at: `${fixture}:${i + 1}` });
  });
  return out;
}

function section(all: Map<string, Section>, fixture: string, name: string): Section {
  const s = all.get(name);
  if (!s) throw new Error(`${fixture}: no section [${name}]`);
  return s;
}

export type KernelFaultType = 'dma' | 'interrupt-remap' | 'unknown';

/** The messages of one fault-reason table, by index; every line's code must be the table's base + its index. */
function reasonTable(s: Section, base: number): string[] {
  return s.lines.map(({ text, at }, index) => {
    const m = /^0x([0-9a-f]{2})\t(.+)$/.exec(text);
    if (!m) throw new Error(`${at}: not "0xNN<TAB>message"`);
    if (parseInt(m[1]!, 16) !== base + index) throw new Error(`${at}: code 0x${m[1]} is not 0x${(base + index).toString(16)}, the next of [${s.name}]`);
    return m[2]!;
  });
}

/**
 * Every code 0-255 with the string and type the kernel of `fixture` (e.g. `fault-reasons-6.12.txt`) gives it:
 * irq_remap_fault_reasons from 0x20, then dma_remap_sm_fault_reasons from 0x30 (if the kernel has it), then
 * dma_remap_fault_reasons from 0, else "Unknown".
 */
export function kernelFaultReasons(root: string, fixture: string): Map<number, { text: string; type: KernelFaultType }> {
  const all = sections(root, fixture);
  const dma = reasonTable(section(all, fixture, 'dma_remap_fault_reasons'), 0);
  const irq = reasonTable(section(all, fixture, 'irq_remap_fault_reasons'), 0x20);
  const smSection = all.get('dma_remap_sm_fault_reasons');
  const sm = smSection && reasonTable(smSection, 0x30);
  const out = new Map<number, { text: string; type: KernelFaultType }>();
  for (let code = 0; code < 256; code++) {
    if (code >= 0x20 && code - 0x20 < irq.length) out.set(code, { text: irq[code - 0x20]!, type: 'interrupt-remap' });
    else if (sm && code >= 0x30 && code - 0x30 < sm.length) out.set(code, { text: sm[code - 0x30]!, type: 'dma' });
    else if (code < dma.length) out.set(code, { text: dma[code]!, type: 'dma' });
    else out.set(code, { text: 'Unknown', type: 'unknown' });
  }
  return out;
}

/** The registers iommu_regset of a version (`debugfs-regs-VERSION.txt`) prints: the 32-bit list, then the 64-bit list. */
export function kernelRegsetLists(root: string, version: string): { regs32: string[]; regs64: string[] } {
  const fixture = `debugfs-regs-${version}.txt`;
  const out = { regs32: [] as string[], regs64: [] as string[] };
  for (const { text, at } of section(sections(root, fixture), fixture, '').lines) {
    const m = /^(32|64) ([A-Z][A-Z0-9_]*)$/.exec(text);
    if (!m) throw new Error(`${at}: not "32 NAME" or "64 NAME"`);
    (m[1] === '32' ? out.regs32 : out.regs64).push(m[2]!);
  }
  return out;
}

/** A bitfield of a descriptor: its qword, lowest bit and width. */
export interface KernelField {
  readonly word: number;
  readonly lsb: number;
  readonly width: number;
}

/**
 * The page group response and page request facts of a version (`pgrp-VERSION.txt`): the bit each
 * QI_PGRP_X() macro shifts its argument to (by macro name), the descriptor type QI_PGRP_RESP_TYPE, and the
 * bitfields of struct page_req_dsc by member name.
 */
export function kernelPageGroupFacts(root: string, version: string): { shift: Record<string, number>; type: bigint; request: Record<string, KernelField> } {
  const fixture = `pgrp-${version}.txt`;
  const all = sections(root, fixture);
  const shift: Record<string, number> = {};
  for (const { text, at } of section(all, fixture, 'response').lines) {
    const m = /^qw[01] ([A-Z_]+) (\d+)$/.exec(text);
    if (!m) throw new Error(`${at}: not "qwN NAME BIT"`);
    shift[`QI_PGRP_${m[1]!}`] = Number(m[2]);
  }
  const constants: Record<string, bigint> = {};
  for (const { text, at } of section(all, fixture, 'constants').lines) {
    const m = /^(\w+) (0x[0-9a-f]+)$/.exec(text);
    if (!m) throw new Error(`${at}: not "NAME 0xVALUE"`);
    constants[m[1]!] = BigInt(m[2]!);
  }
  const type = constants.QI_PGRP_RESP_TYPE;
  if (type === undefined) throw new Error(`${fixture}: no QI_PGRP_RESP_TYPE`);
  const request: Record<string, KernelField> = {};
  for (const { text, at } of section(all, fixture, 'request').lines) {
    const m = /^qw(\d) (\w+) (?:(\d+):)?(\d+)$/.exec(text);
    if (!m) throw new Error(`${at}: not "qwN name MSB:LSB" or "qwN name BIT"`);
    const lsb = Number(m[4]);
    const msb = m[3] === undefined ? lsb : Number(m[3]);
    request[m[2]!] = { word: Number(m[1]), lsb, width: msb - lsb + 1 };
  }
  return { shift, type, request };
}
