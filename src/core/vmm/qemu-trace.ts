import { U64 } from '../u64';

/**
 * QEMU's intel-iommu trace events (hw/i386/trace-events, the `vtd_*` lines) and their text as QEMU's "log"
 * trace backend prints them, so that a simulated vIOMMU writes what `qemu-system-x86_64 -trace 'vtd_*'`
 * writes and a real run and a simulated one can be laid side by side (src/readers/qemu-trace.ts reads both).
 *
 * Each event is declared here as trace-events declares it: its arguments with their C types and names, and
 * its format string as the C source has it (string pieces and PRI* macros). The declarations are those of
 * QEMU 7.2 (7.2.22 is the version of the real run in test/fixtures/real-vm/); events QEMU added later carry
 * `since`. The format strings are quoted, not copied logic: rendering is done by a small printf of our own
 * (the conversions trace-events uses: %d %u %x %s with zero padding and width).
 *
 * The log backend (scripts/tracetool/backend/log.py, 7.2) prints `qemu_log("<name> " fmt "\n", args)`, or,
 * with `-msg timestamp=on`, `qemu_log("%d@%zu.%06zu:<name> " fmt "\n", thread id, tv_sec, tv_usec, args)`:
 * one space after the name even when the format is empty (`vtd_inv_qi_fetch ` ends in a space), no `0x`
 * unless the format has one, and a newline.
 */

/** The C types trace-events uses for vtd_* arguments. */
export type CType = 'bool' | 'int' | 'uint8_t' | 'uint16_t' | 'uint32_t' | 'uint64_t' | 'const char *';

/**
 * A uint64_t argument: a U64, or a plain number when it is a non-negative safe integer (addresses and
 * sizes of at most 53 bits, which is every address the model uses as a number).
 */
export type Word64 = U64 | number;

type TsOf<C> = C extends 'uint64_t' ? Word64 : C extends 'const char *' ? string : C extends 'bool' ? boolean : number;

interface Declaration {
  readonly args: readonly (readonly [CType, string])[];
  /** The format string as hw/i386/trace-events writes it (C string pieces and PRI* macros). */
  readonly format: string;
  /** For events QEMU 7.2 does not have: where they come from. */
  readonly since?: string;
}

/** Commits and series that added events after 7.2 (see QEMU_TRACE_EVENTS[...].since). */
const PASID_CACHE_SERIES =
  'not in QEMU 7.2: the qemu-devel series "intel_iommu: Handle PASID cache invalidation" (Yi Liu, Zhenzhong Duan, revisions of 2024-2025); no merged commit id was found';

/**
 * Every vtd_* event of QEMU 7.2's hw/i386/trace-events, in its order, then the later ones. The format
 * strings are quoted from that file; `test/unit/vmm-qemu-trace.test.ts` holds each declaration line as the
 * file has it and checks that these rebuild it.
 */
export const QEMU_TRACE_EVENTS = {
  vtd_inv_desc: { args: [['const char *', 'type'], ['uint64_t', 'hi'], ['uint64_t', 'lo']], format: '"invalidate desc type %s high 0x%"PRIx64" low 0x%"PRIx64' },
  vtd_inv_desc_cc_domain: { args: [['uint16_t', 'domain']], format: '"context invalidate domain 0x%"PRIx16' },
  vtd_inv_desc_cc_global: { args: [], format: '"context invalidate globally"' },
  vtd_inv_desc_cc_device: { args: [['uint8_t', 'bus'], ['uint8_t', 'dev'], ['uint8_t', 'fn']], format: '"context invalidate device %02"PRIx8":%02"PRIx8".%02"PRIx8' },
  vtd_inv_desc_cc_devices: { args: [['uint16_t', 'sid'], ['uint16_t', 'fmask']], format: '"context invalidate devices sid 0x%"PRIx16" fmask 0x%"PRIx16' },
  vtd_inv_desc_iotlb_global: { args: [], format: '"iotlb invalidate global"' },
  vtd_inv_desc_iotlb_domain: { args: [['uint16_t', 'domain']], format: '"iotlb invalidate whole domain 0x%"PRIx16' },
  vtd_inv_desc_iotlb_pages: { args: [['uint16_t', 'domain'], ['uint64_t', 'addr'], ['uint8_t', 'mask']], format: '"iotlb invalidate domain 0x%"PRIx16" addr 0x%"PRIx64" mask 0x%"PRIx8' },
  // Declared in 7.2 but called from nowhere in it: QEMU 7.2 accepts a PASID-based IOTLB descriptor without a
  // trace. "intel_iommu: Process PASID-based iotlb invalidation" (6ebe6cf2a066, in mst's pull for QEMU 10.0)
  // processes them; whether it traces these two was not checked.
  vtd_inv_desc_iotlb_pasid_pages: { args: [['uint16_t', 'domain'], ['uint64_t', 'addr'], ['uint8_t', 'mask'], ['uint32_t', 'pasid']], format: '"iotlb invalidate domain 0x%"PRIx16" addr 0x%"PRIx64" mask 0x%"PRIx8" pasid 0x%"PRIx32' },
  vtd_inv_desc_iotlb_pasid: { args: [['uint16_t', 'domain'], ['uint32_t', 'pasid']], format: '"iotlb invalidate domain 0x%"PRIx16" pasid 0x%"PRIx32' },
  vtd_inv_desc_wait_sw: { args: [['uint64_t', 'addr'], ['uint32_t', 'data']], format: '"wait invalidate status write addr 0x%"PRIx64" data 0x%"PRIx32' },
  vtd_inv_desc_wait_irq: { args: [['const char *', 'msg']], format: '"%s"' },
  vtd_inv_desc_wait_write_fail: { args: [['uint64_t', 'hi'], ['uint64_t', 'lo']], format: '"write fail for wait desc hi 0x%"PRIx64" lo 0x%"PRIx64' },
  vtd_inv_desc_iec: { args: [['uint32_t', 'granularity'], ['uint32_t', 'index'], ['uint32_t', 'mask']], format: '"granularity 0x%"PRIx32" index 0x%"PRIx32" mask 0x%"PRIx32' },
  vtd_inv_qi_enable: { args: [['bool', 'enable']], format: '"enabled %d"' },
  vtd_inv_qi_setup: { args: [['uint64_t', 'addr'], ['int', 'size']], format: '"addr 0x%"PRIx64" size %d"' },
  vtd_inv_qi_head: { args: [['uint16_t', 'head']], format: '"read head %d"' },
  // QEMU names the tail argument `head`.
  vtd_inv_qi_tail: { args: [['uint16_t', 'head']], format: '"write tail %d"' },
  vtd_inv_qi_fetch: { args: [], format: '""' },
  vtd_context_cache_reset: { args: [], format: '""' },
  vtd_re_not_present: { args: [['uint8_t', 'bus']], format: '"Root entry bus %"PRIu8" not present"' },
  vtd_ce_not_present: { args: [['uint8_t', 'bus'], ['uint8_t', 'devfn']], format: '"Context entry bus %"PRIu8" devfn %"PRIu8" not present"' },
  vtd_iotlb_page_hit: { args: [['uint16_t', 'sid'], ['uint64_t', 'addr'], ['uint64_t', 'slpte'], ['uint16_t', 'domain']], format: '"IOTLB page hit sid 0x%"PRIx16" iova 0x%"PRIx64" slpte 0x%"PRIx64" domain 0x%"PRIx16' },
  vtd_iotlb_page_update: { args: [['uint16_t', 'sid'], ['uint64_t', 'addr'], ['uint64_t', 'slpte'], ['uint16_t', 'domain']], format: '"IOTLB page update sid 0x%"PRIx16" iova 0x%"PRIx64" slpte 0x%"PRIx64" domain 0x%"PRIx16' },
  vtd_iotlb_cc_hit: { args: [['uint8_t', 'bus'], ['uint8_t', 'devfn'], ['uint64_t', 'high'], ['uint64_t', 'low'], ['uint32_t', 'gen']], format: '"IOTLB context hit bus 0x%"PRIx8" devfn 0x%"PRIx8" high 0x%"PRIx64" low 0x%"PRIx64" gen %"PRIu32' },
  vtd_iotlb_cc_update: { args: [['uint8_t', 'bus'], ['uint8_t', 'devfn'], ['uint64_t', 'high'], ['uint64_t', 'low'], ['uint32_t', 'gen1'], ['uint32_t', 'gen2']], format: '"IOTLB context update bus 0x%"PRIx8" devfn 0x%"PRIx8" high 0x%"PRIx64" low 0x%"PRIx64" gen %"PRIu32" -> gen %"PRIu32' },
  vtd_iotlb_reset: { args: [['const char *', 'reason']], format: '"IOTLB reset (reason: %s)"' },
  vtd_fault_disabled: { args: [], format: '"Fault processing disabled for context entry"' },
  vtd_replay_ce_valid: { args: [['const char *', 'mode'], ['uint8_t', 'bus'], ['uint8_t', 'dev'], ['uint8_t', 'fn'], ['uint16_t', 'domain'], ['uint64_t', 'hi'], ['uint64_t', 'lo']], format: '"%s: replay valid context device %02"PRIx8":%02"PRIx8".%02"PRIx8" domain 0x%"PRIx16" hi 0x%"PRIx64" lo 0x%"PRIx64' },
  vtd_replay_ce_invalid: { args: [['uint8_t', 'bus'], ['uint8_t', 'dev'], ['uint8_t', 'fn']], format: '"replay invalid context device %02"PRIx8":%02"PRIx8".%02"PRIx8' },
  vtd_page_walk_level: { args: [['uint64_t', 'addr'], ['uint32_t', 'level'], ['uint64_t', 'start'], ['uint64_t', 'end']], format: '"walk (base=0x%"PRIx64", level=%"PRIu32") iova range 0x%"PRIx64" - 0x%"PRIx64' },
  vtd_page_walk_one: { args: [['uint16_t', 'domain'], ['uint64_t', 'iova'], ['uint64_t', 'gpa'], ['uint64_t', 'mask'], ['int', 'perm']], format: '"domain 0x%"PRIx16" iova 0x%"PRIx64" -> gpa 0x%"PRIx64" mask 0x%"PRIx64" perm %d"' },
  vtd_page_walk_one_skip_map: { args: [['uint64_t', 'iova'], ['uint64_t', 'mask'], ['uint64_t', 'translated']], format: '"iova 0x%"PRIx64" mask 0x%"PRIx64" translated 0x%"PRIx64' },
  vtd_page_walk_one_skip_unmap: { args: [['uint64_t', 'iova'], ['uint64_t', 'mask']], format: '"iova 0x%"PRIx64" mask 0x%"PRIx64' },
  vtd_page_walk_skip_read: { args: [['uint64_t', 'iova'], ['uint64_t', 'next']], format: '"Page walk skip iova 0x%"PRIx64" - 0x%"PRIx64" due to unable to read"' },
  vtd_page_walk_skip_reserve: { args: [['uint64_t', 'iova'], ['uint64_t', 'next']], format: '"Page walk skip iova 0x%"PRIx64" - 0x%"PRIx64" due to rsrv set"' },
  vtd_switch_address_space: { args: [['uint8_t', 'bus'], ['uint8_t', 'slot'], ['uint8_t', 'fn'], ['bool', 'on']], format: '"Device %02x:%02x.%x switching address space (iommu enabled=%d)"' },
  vtd_as_unmap_whole: { args: [['uint8_t', 'bus'], ['uint8_t', 'slot'], ['uint8_t', 'fn'], ['uint64_t', 'iova'], ['uint64_t', 'size']], format: '"Device %02x:%02x.%x start 0x%"PRIx64" size 0x%"PRIx64' },
  vtd_translate_pt: { args: [['uint16_t', 'sid'], ['uint64_t', 'addr']], format: '"source id 0x%"PRIx16", iova 0x%"PRIx64' },
  vtd_pt_enable_fast_path: { args: [['uint16_t', 'sid'], ['bool', 'success']], format: '"sid 0x%"PRIx16" %d"' },
  vtd_irq_generate: { args: [['uint64_t', 'addr'], ['uint64_t', 'data']], format: '"addr 0x%"PRIx64" data 0x%"PRIx64' },
  vtd_reg_read: { args: [['uint64_t', 'addr'], ['uint64_t', 'size']], format: '"addr 0x%"PRIx64" size 0x%"PRIx64' },
  vtd_reg_write: { args: [['uint64_t', 'addr'], ['uint64_t', 'size'], ['uint64_t', 'val']], format: '"addr 0x%"PRIx64" size 0x%"PRIx64" value 0x%"PRIx64' },
  vtd_reg_dmar_root: { args: [['uint64_t', 'addr'], ['bool', 'scalable']], format: '"addr 0x%"PRIx64" scalable %d"' },
  vtd_reg_ir_root: { args: [['uint64_t', 'addr'], ['uint32_t', 'size']], format: '"addr 0x%"PRIx64" size 0x%"PRIx32' },
  vtd_reg_write_gcmd: { args: [['uint32_t', 'status'], ['uint32_t', 'val']], format: '"status 0x%"PRIx32" value 0x%"PRIx32' },
  vtd_reg_write_fectl: { args: [['uint32_t', 'value']], format: '"value 0x%"PRIx32' },
  vtd_reg_write_iectl: { args: [['uint32_t', 'value']], format: '"value 0x%"PRIx32' },
  vtd_reg_ics_clear_ip: { args: [], format: '""' },
  vtd_dmar_translate: { args: [['uint8_t', 'bus'], ['uint8_t', 'slot'], ['uint8_t', 'func'], ['uint64_t', 'iova'], ['uint64_t', 'gpa'], ['uint64_t', 'mask']], format: '"dev %02x:%02x.%02x iova 0x%"PRIx64" -> gpa 0x%"PRIx64" mask 0x%"PRIx64' },
  vtd_dmar_enable: { args: [['bool', 'en']], format: '"enable %d"' },
  vtd_dmar_fault: { args: [['uint16_t', 'sid'], ['int', 'fault'], ['uint64_t', 'addr'], ['bool', 'is_write']], format: '"sid 0x%"PRIx16" fault %d addr 0x%"PRIx64" write %d"' },
  vtd_ir_enable: { args: [['bool', 'en']], format: '"enable %d"' },
  vtd_ir_irte_get: { args: [['int', 'index'], ['uint64_t', 'lo'], ['uint64_t', 'hi']], format: '"index %d low 0x%"PRIx64" high 0x%"PRIx64' },
  vtd_ir_remap: { args: [['int', 'index'], ['int', 'tri'], ['int', 'vec'], ['int', 'deliver'], ['uint32_t', 'dest'], ['int', 'dest_mode']], format: '"index %d trigger %d vector %d deliver %d dest 0x%"PRIx32" mode %d"' },
  vtd_ir_remap_type: { args: [['const char *', 'type']], format: '"%s"' },
  vtd_ir_remap_msi: { args: [['uint64_t', 'addr'], ['uint64_t', 'data'], ['uint64_t', 'addr2'], ['uint64_t', 'data2']], format: '"(addr 0x%"PRIx64", data 0x%"PRIx64") -> (addr 0x%"PRIx64", data 0x%"PRIx64")"' },
  vtd_ir_remap_msi_req: { args: [['uint64_t', 'addr'], ['uint64_t', 'data']], format: '"addr 0x%"PRIx64" data 0x%"PRIx64' },
  vtd_fsts_ppf: { args: [['bool', 'set']], format: '"FSTS PPF bit set to %d"' },
  vtd_fsts_clear_ip: { args: [], format: '""' },
  vtd_frr_new: { args: [['int', 'index'], ['uint64_t', 'hi'], ['uint64_t', 'lo']], format: '"index %d high 0x%"PRIx64" low 0x%"PRIx64' },
  vtd_warn_invalid_qi_tail: { args: [['uint16_t', 'tail']], format: '"tail 0x%"PRIx16' },
  vtd_warn_ir_vector: { args: [['uint16_t', 'sid'], ['int', 'index'], ['int', 'vec'], ['int', 'target']], format: '"sid 0x%"PRIx16" index %d vec %d (should be: %d)"' },
  vtd_warn_ir_trigger: { args: [['uint16_t', 'sid'], ['int', 'index'], ['int', 'trig'], ['int', 'target']], format: '"sid 0x%"PRIx16" index %d trigger %d (should be: %d)"' },
  // Later than 7.2 (format strings as the series' patches to hw/i386/trace-events write them).
  vtd_pasid_cache_reset: { args: [], format: '""', since: PASID_CACHE_SERIES },
  vtd_inv_desc_pasid_cache_gsi: { args: [], format: '""', since: PASID_CACHE_SERIES },
  vtd_inv_desc_pasid_cache_dsi: { args: [['uint16_t', 'domain']], format: '"Domain selective PC invalidation domain 0x%"PRIx16', since: PASID_CACHE_SERIES },
  vtd_inv_desc_pasid_cache_psi: { args: [['uint16_t', 'domain'], ['uint32_t', 'pasid']], format: '"PASID selective PC invalidation domain 0x%"PRIx16" pasid 0x%"PRIx32', since: PASID_CACHE_SERIES },
  vtd_pasid_cache_devsi: { args: [['uint8_t', 'bus'], ['uint8_t', 'dev'], ['uint8_t', 'fn']], format: '"Dev selective PC invalidation dev: %02"PRIx8":%02"PRIx8".%02"PRIx8', since: `${PASID_CACHE_SERIES} (a later revision adds this one)` },
} as const satisfies Record<string, Declaration>;

export type QemuTraceEventName = keyof typeof QEMU_TRACE_EVENTS;

type ArgsOf<A> = A extends readonly [readonly [infer C, infer N extends string], ...infer Rest]
  ? { readonly [K in N]: TsOf<C> } & ArgsOf<Rest>
  : unknown;

/**
 * The fixed strings QEMU passes to its `const char *` arguments, per event and argument, as hw/i386/intel_iommu.c
 * writes them. 7.2 unless said.
 */
export const QEMU_TRACE_STRINGS = {
  vtd_inv_desc: {
    /**
     * vtd_process_inv_desc (7.2 l.2679-2718). QEMU 7.2 traces nothing for a PASID-cache (0x7) or PASID-based
     * IOTLB (0x6) descriptor: it accepts them without a trace (l.2697-2701). `p-iotlb` came with
     * 6ebe6cf2a066 ("intel_iommu: Process PASID-based iotlb invalidation", QEMU 10.0); `pasid-cache` is in
     * the PASID-cache series (not merged as far as found).
     */
    type: ['context-cache', 'iotlb', 'wait', 'iec', 'device', 'p-iotlb', 'pasid-cache'],
  },
  /** vtd_generate_completion_event (7.2 l.579-597). */
  vtd_inv_desc_wait_irq: { msg: ['One pending, skip current', 'IM in IECTL_REG is set, new event not generated', 'Generating complete event'] },
  /** vtd_update_iotlb (7.2 l.364): the only reason 7.2 traces. */
  vtd_iotlb_reset: { reason: ['iotlb exceeds size limit'] },
  /** vtd_iommu_replay (7.2 l.3837): by RTADDR.TTM. */
  vtd_replay_ce_valid: { mode: ['scalable mode', 'legacy mode'] },
  /** vtd_interrupt_remap_msi (7.2 l.3473, l.3485). */
  vtd_ir_remap_type: { type: ['MSI', 'IOAPIC'] },
} as const;

type Strings = typeof QEMU_TRACE_STRINGS;
type Narrowed<N> = N extends keyof Strings ? { readonly [K in keyof Strings[N]]: Strings[N][K] extends readonly (infer S)[] ? S : never } : unknown;
type Omitted<T, N> = N extends keyof Strings ? Omit<T, keyof Strings[N]> : T;

/** One trace event with its arguments, named as trace-events names them. */
export type QemuTraceEvent = {
  [N in QemuTraceEventName]: { readonly event: N } & Omitted<ArgsOf<(typeof QEMU_TRACE_EVENTS)[N]['args']>, N> & Narrowed<N>;
}[QemuTraceEventName];

/** The event of one name. */
export type QemuTraceEventOf<N extends QemuTraceEventName> = Extract<QemuTraceEvent, { event: N }>;

/** `-msg timestamp=on`: the thread id and the time of day, which the caller supplies (the model has no clock). */
export interface QemuTraceStamp {
  readonly pid: number;
  readonly sec: number;
  readonly usec: number;
}

/** A compiled conversion: which argument, how it is printed. */
interface Conversion {
  readonly arg: number;
  readonly conv: 'd' | 'u' | 'x' | 's';
  readonly width: number;
  readonly zero: boolean;
}

interface Compiled {
  readonly name: string;
  readonly args: readonly (readonly [CType, string])[];
  /** Literal text and conversions, alternating: text[0] conv[0] text[1] ... text[n]. */
  readonly text: readonly string[];
  readonly convs: readonly Conversion[];
}

/** What the PRI* macros expand to on x86-64 glibc (PRIx64 is "lx"; the length modifier changes nothing here). */
const PRI: Record<string, 'd' | 'u' | 'x'> = {
  PRIx8: 'x', PRIx16: 'x', PRIx32: 'x', PRIx64: 'x',
  PRIu8: 'u', PRIu16: 'u', PRIu32: 'u', PRIu64: 'u',
  PRId8: 'd', PRId16: 'd', PRId32: 'd', PRId64: 'd',
};

/** The C text of a format (`"a %"PRIx64" b"`) as one string with the macros put in as `%{x}` markers. */
function joinPieces(name: string, source: string): string {
  let out = '';
  let i = 0;
  while (i < source.length) {
    const c = source[i]!;
    if (c === ' ') {
      i++;
    } else if (c === '"') {
      const end = source.indexOf('"', i + 1);
      if (end < 0) throw new Error(`${name}: unterminated string in its format`);
      out += source.slice(i + 1, end);
      i = end + 1;
    } else {
      const m = /^PRI[dux](?:8|16|32|64)/.exec(source.slice(i));
      if (!m) throw new Error(`${name}: unexpected text in its format at "${source.slice(i)}"`);
      out += `{${PRI[m[0]]}}`;
      i += m[0].length;
    }
  }
  return out;
}

function compile(name: string, d: Declaration): Compiled {
  const fmt = joinPieces(name, d.format);
  const text: string[] = [];
  const convs: Conversion[] = [];
  let lit = '';
  let i = 0;
  while (i < fmt.length) {
    if (fmt[i] !== '%') {
      lit += fmt[i++];
      continue;
    }
    const m = /^%(0?)(\d*)(?:\{([dux])\}|([dux]|s))/.exec(fmt.slice(i));
    if (!m) throw new Error(`${name}: unsupported conversion at "${fmt.slice(i)}"`);
    text.push(lit);
    lit = '';
    convs.push({ arg: convs.length, conv: (m[3] ?? m[4]) as Conversion['conv'], width: m[2] ? Number(m[2]) : 0, zero: m[1] === '0' });
    i += m[0].length;
  }
  text.push(lit);
  if (convs.length !== d.args.length) throw new Error(`${name}: ${convs.length} conversions for ${d.args.length} arguments`);
  return { name, args: d.args, text, convs };
}

const COMPILED = new Map<string, Compiled>();
for (const [name, d] of Object.entries(QEMU_TRACE_EVENTS) as [string, Declaration][]) COMPILED.set(name, compile(name, d));

const LIMITS: Record<Exclude<CType, 'bool' | 'uint64_t' | 'const char *'>, [number, number]> = {
  int: [-0x8000_0000, 0x7fff_ffff],
  uint8_t: [0, 0xff],
  uint16_t: [0, 0xffff],
  uint32_t: [0, 0xffff_ffff],
};

/**
 * One argument as its conversion prints it. A value its C type cannot hold is a bug in the caller, not
 * something QEMU could print: it throws, naming the event and the argument.
 */
function render(c: Compiled, conv: Conversion, value: unknown): string {
  const [type, argName] = c.args[conv.arg]!;
  const bad = (): never => {
    throw new RangeError(`${c.name}: ${argName} (${type}) cannot be ${typeof value === 'object' ? String(value) : JSON.stringify(value)}`);
  };
  let s: string;
  if (type === 'const char *') {
    if (typeof value !== 'string') bad();
    s = value as string;
  } else if (type === 'bool') {
    if (typeof value !== 'boolean') bad();
    s = value ? '1' : '0';
  } else if (type === 'uint64_t') {
    let w: U64;
    if (value instanceof U64) w = value;
    else if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) w = U64.fromNumber(value);
    else return bad();
    s = conv.conv === 'x' ? w.toHex(1) : w.isSafe() ? String(w.toNumber()) : w.toBigInt().toString();
  } else {
    const [min, max] = LIMITS[type];
    if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) bad();
    const n = value as number;
    // %x of a negative int prints its 32-bit two's complement; %u likewise.
    s = conv.conv === 'x' ? (n >>> 0).toString(16) : conv.conv === 'u' ? String(n >>> 0) : String(n);
  }
  return conv.width > s.length ? s.padStart(conv.width, conv.zero ? '0' : ' ') : s;
}

/**
 * One event as the log backend prints it, without the newline: `<name> <formatted>` or, with a stamp,
 * `<pid>@<sec>.<usec, 6 digits>:<name> <formatted>`.
 */
export function formatQemuTraceLine(e: QemuTraceEvent, stamp?: QemuTraceStamp): string {
  const c = COMPILED.get(e.event);
  if (!c) throw new RangeError(`not a QEMU vtd trace event: ${String(e.event)}`);
  const values = e as unknown as Record<string, unknown>;
  let out = c.text[0]!;
  for (let i = 0; i < c.convs.length; i++) out += render(c, c.convs[i]!, values[c.args[i]![1]]) + c.text[i + 1]!;
  const line = `${c.name} ${out}`;
  if (!stamp) return line;
  const { pid, sec, usec } = stamp;
  if (![pid, sec, usec].every((n) => Number.isSafeInteger(n) && n >= 0) || usec > 999_999) {
    throw new RangeError(`${c.name}: bad trace stamp ${pid}@${sec}.${usec}`);
  }
  return `${pid}@${sec}.${String(usec).padStart(6, '0')}:${line}`;
}

/** Lines as QEMU writes them to the trace file: each ends in a newline. */
export function formatQemuTrace(entries: readonly { readonly event: QemuTraceEvent; readonly stamp?: QemuTraceStamp }[]): string {
  let out = '';
  for (const { event, stamp } of entries) out += formatQemuTraceLine(event, stamp) + '\n';
  return out;
}

/** The declaration line of an event as hw/i386/trace-events writes it (`name(type arg, ...) "format"`). */
export function qemuTraceDeclaration(name: QemuTraceEventName): string {
  const d: Declaration = QEMU_TRACE_EVENTS[name];
  const args = d.args.length === 0 ? 'void' : d.args.map(([t, n]) => (t.endsWith('*') ? `${t}${n}` : `${t} ${n}`)).join(', ');
  return `${name}(${args}) ${d.format}`;
}

/** Whether QEMU 7.2 has the event (the others carry `since`). */
export function inQemu72(name: QemuTraceEventName): boolean {
  return !('since' in QEMU_TRACE_EVENTS[name]);
}

/**
 * The `type` QEMU's vtd_inv_desc trace gives a queued descriptor whose first qword's low 32 bits are `low32`,
 * or null when QEMU traces no vtd_inv_desc for it. QEMU takes the type from bits 3:0 alone
 * (VTD_INV_DESC_TYPE 0xf; it ignores the spec's type bits 11:9). In 7.2 a PASID-based IOTLB (6) or
 * PASID-cache (7) descriptor is accepted without a trace (vtd_process_inv_desc, l.2697-2701) and other types
 * are an invalidation-queue error (l.2725). With `later`: type 6 as 6ebe6cf2a066 ("intel_iommu: Process
 * PASID-based iotlb invalidation", QEMU 10.0) traces it, type 7 as the PASID-cache series does.
 */
export function qemuInvDescType(low32: number, options: { readonly later?: boolean } = {}): QemuTraceStrings<'vtd_inv_desc', 'type'> | null {
  switch (low32 & 0xf) {
    case 1: return 'context-cache';
    case 2: return 'iotlb';
    case 3: return 'device';
    case 4: return 'iec';
    case 5: return 'wait';
    case 6: return options.later ? 'p-iotlb' : null;
    case 7: return options.later ? 'pasid-cache' : null;
    default: return null;
  }
}

/** The fixed strings of one `const char *` argument. */
export type QemuTraceStrings<N extends keyof Strings, K extends keyof Strings[N]> = Strings[N][K] extends readonly (infer S)[] ? S : never;
