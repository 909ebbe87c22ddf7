import { linuxFaultReason } from '../vtd/fault-reasons';
import { linuxQiTypeName } from '../vtd/descriptors';

/**
 * The kernel log the driver model writes, in the exact formats Linux prints (drivers/iommu/intel/dmar.c,
 * svm.c, prq.c), for the kernel version the model plays. Timestamps come from a simulated clock that
 * advances a fixed step per line, so the output is deterministic; `dmesg()` renders it the way `dmesg` does.
 *
 * Every version boundary below is the first mainline release that prints the new form, with the commit that
 * changed it and how that was checked; docs/log-formats.md has the same table for the readers.
 *
 * Versions. A KernelVersion is a mainline release, `major.minor` = `major.minor.0`, throughout the model:
 * every version-gated behaviour (here, qi.ts, dma-pte.ts, attach.ts, debugfs-*.ts) switches at the first
 * mainline release that carries the change, and behaviour the model does not gate by version is the newest
 * kernel's it follows. Stable and distribution kernels carry some changes earlier, so such a kernel can
 * differ from the model at its `major.minor`; the backports the model knows of (each also noted at its
 * boundary):
 * - fe89277c9ceb "iommu/vt-d: Fix intel iommu iotlb sync hardlockup and retry" (the ITE walk; mainline 7.0,
 *   queued for 5.10.y, 5.15.y, 6.1.y, 6.6.y, 6.12.y, 6.18.y, 6.19.y; in the Debian 6.1 and 6.12.118 sources).
 *   So the real VM's 6.12.118 walks every slot where the model at '6.12' finds the hard lockup.
 * - 75ed00055c05 "iommu/vt-d: Clear Present bit before tearing down PASID entry" (mainline 7.0; 6.12.y,
 *   6.18.y, 6.19.y; in 6.12.118): not gated, pasid-entries.ts tears down this way at every version.
 * - 6ceb93f952f6, f1645676f25d, the DMAR_DEBUG dump's "not present" lines (mainline 6.13; 6.12.y, 6.6.y,
 *   6.1.y; in 6.12.118): the readers take both forms at every version.
 * - 28a77185f1cd PRQ overflow lines (5.12; 5.10.y, 5.11.y), 78a523fe73b8 rejected page request modes (5.13;
 *   5.12.y, 5.10.y), eea53c581688 no write-only second-stage leaves (5.13; 5.10.y, 5.12.y), ba3b01d7a6f4
 *   debugfs register reads (5.6; 5.4.y, 5.5.y), 4402e8f39d0b no LPIG in page responses (6.18; 6.17.y), and
 *   possibly 0b482d0c75bf's bus and device without `0x` (5.15; 5.14.y not checked).
 * - 6.12.118's EOPNOTSUPP for every SVA bind on x86 (a stable-only change, sva.ts): the model binds as 6.17.
 * Patch levels would need the stable release of each backport in each series, which is known for 6.12.118
 * only; no test of the real VM meets a difference (it runs legacy mode and sees no ITE), so the model keeps
 * mainline versions and this list.
 */

export type LogLevel = 'crit' | 'err' | 'warn' | 'info' | 'debug';

export interface LogLine {
  readonly seconds: number;
  readonly level: LogLevel;
  /** One printk record. Kernels up to 4.6 print the fault report as one record of two lines (an inner `\n`). */
  readonly text: string;
}

/**
 * The state behind one `*_ratelimited` call site (`___ratelimit`, DEFAULT_RATELIMIT_INTERVAL 5 s and
 * DEFAULT_RATELIMIT_BURST 10): at most 10 messages per 5 s window; the first call after a window that
 * dropped messages prints "<func>: N callbacks suppressed" first.
 */
export class Ratelimit {
  private begin = -1;
  private printed = 0;
  private missed = 0;

  constructor(
    readonly func: string,
    private readonly interval = 5,
    private readonly burst = 10,
  ) {}

  allow(log: KernelLog): boolean {
    const now = log.now;
    if (this.begin < 0) this.begin = now;
    if (now - this.begin > this.interval) {
      if (this.missed) {
        log.warn(`${this.func}: ${this.missed} callbacks suppressed`);
        this.missed = 0;
      }
      this.begin = now;
      this.printed = 0;
    }
    if (this.printed < this.burst) {
      this.printed++;
      return true;
    }
    this.missed++;
    return false;
  }
}

/** A kernel version as "major.minor", a mainline release (see the header); it decides the formats printed. */
export type KernelVersion = `${number}.${number}`;

/**
 * `version` if it names a mainline release. The type lets '6.12.118' through (`${number}` matches "12.118"),
 * and compareVersions would read it as 6.12.0: a patch level is refused here instead of being dropped.
 */
export function mainlineVersion(version: string): KernelVersion {
  if (!/^\d+\.\d+$/.test(version)) {
    throw new RangeError(`kernel version ${version}: the model follows mainline releases (major.minor, e.g. 6.12 for 6.12.0); the stable backports it knows are listed in src/core/driver/log.ts`);
  }
  return version as KernelVersion;
}

export class KernelLog {
  readonly lines: LogLine[] = [];
  /** The kernel version whose formats the lines take; the kernel that writes the log sets it. */
  version: KernelVersion = '6.12';
  private clock = 0;
  private readonly listeners = new Set<(l: LogLine) => void>();

  /** Advances the simulated clock (seconds since boot). */
  tick(seconds: number): void {
    this.clock += seconds;
  }

  /** The simulated clock, in seconds since boot. */
  get now(): number {
    return this.clock;
  }

  private add(level: LogLevel, text: string): void {
    this.clock += 0.000013;
    const line = { seconds: Math.round(this.clock * 1e6) / 1e6, level, text };
    this.lines.push(line);
    for (const l of this.listeners) l(line);
  }

  crit(text: string): void {
    this.add('crit', text);
  }
  err(text: string): void {
    this.add('err', text);
  }
  warn(text: string): void {
    this.add('warn', text);
  }
  info(text: string): void {
    this.add('info', text);
  }

  subscribe(listener: (l: LogLine) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /**
   * `[    1.234567] text` lines, as util-linux `dmesg` prints them: the later lines of a multi-line record
   * have no timestamp of their own and are indented by the width of the first one's, as in this 4.x report:
   * `[   20.210640] DMAR: DMAR:[DMA Read] Request device [04:00.0] fault addr ca6d5000 ` then
   * `               DMAR:[fault reason 01] Present bit in root entry is clear`.
   */
  dmesg(): string {
    let out = '';
    for (const l of this.lines) {
      const stamp = `[${l.seconds.toFixed(6).padStart(12)}] `;
      out += stamp + l.text.split('\n').join('\n' + ' '.repeat(stamp.length)) + '\n';
    }
    return out;
  }

  get length(): number {
    return this.lines.length;
  }

  truncate(n: number): void {
    this.lines.length = n;
  }
}

/** What `dev_driver_string` needs of a device: its name and the driver bound to it, if any. */
export interface LogDevice {
  /** `dev_name`: for a PCI device `SSSS:BB:DD.F`. */
  readonly name: string;
  /** The bound driver's name (`dev->driver->name`); undefined while no driver is bound. */
  readonly driver?: string | undefined;
}

/**
 * The prefix every `dev_*` and `pci_*` line carries (`dev_printk`'s `"%s %s: ", dev_driver_string(dev),
 * dev_name(dev)`): the bound driver's name, or the bus name `pci` before a driver binds, then the device.
 * A file's `dev_fmt` comes after it (intel/iommu.c's is `pr_fmt`, so its `dev_*` lines read
 * `pci 0000:00:02.0: DMAR: ...`; nested.c, pasid.c, io-pgfault.c and iommufd define none).
 */
export function devPrefix(dev: LogDevice): string {
  return `${dev.driver ?? 'pci'} ${dev.name}: `;
}

/**
 * What `report_bug` prints first for a WARN_ON (KERN_DEFAULT, so at the default warning level). The rest of
 * the splat (`WARNING: CPU: ... at file:line func+off/size`, registers, call trace) depends on the build and
 * the CPU state, so the model records it as a finding (findings.ts) rather than print a guess.
 */
export const CUT_HERE = '------------[ cut here ]------------';

/** Negative when `a` is older than `b`, 0 when equal, positive when newer. */
export function compareVersions(a: KernelVersion, b: KernelVersion): number {
  return versionKey(a) - versionKey(b);
}

/** major * 1000 + minor, parsed once per version string: the driver asks on every flush and map. */
const VERSION_KEYS = new Map<string, number>();
function versionKey(v: KernelVersion): number {
  let k = VERSION_KEYS.get(v);
  if (k === undefined) {
    const [major, minor] = v.split('.').map(Number) as [number, number];
    k = major * 1000 + minor;
    VERSION_KEYS.set(v, k);
  }
  return k;
}

/** Whether `version` prints the form that arrived in `since`. */
export function isAtLeast(version: KernelVersion, since: KernelVersion): boolean {
  return compareVersions(version, since) >= 0;
}

/**
 * The releases where a line the model prints changed its form, with the change that did it. "Checked" says
 * how the boundary was verified; where the commit id could not be found, it says so.
 */
export const FORMAT_CHANGES = {
  /**
   * dmar.c's `pr_fmt`: `KBUILD_MODNAME ": "` (so `dmar: `) up to 4.1, `"DMAR: "` from 4.2; the boot line of a
   * unit changed with it from `IOMMU %d: reg_base_addr` to `%s: reg_base_addr` (the unit's name).
   * Checked: the 4.1 source (axxia/axxia_yocto_linux_4.1 drivers/iommu/dmar.c) has both old forms; a 2016
   * report from a 4.2-4.6 kernel prints `DMAR: DMAR:[DMA Read] ...`; 4.2 itself is the release the
   * project's reference gives (Joerg Roedel's log-message cleanup of the 4.2 merge window). Commit id not
   * found within the look-up budget (2015 patch mail is not in the searchable archive).
   */
  upperCasePrefix: '4.2',
  /**
   * The fault report became one line (`[%s] Request device [%02x:%02x.%d] fault addr %llx [fault reason %02d]
   * %s`) and the fault handler was rate limited (`dmar_fault: N callbacks suppressed`): Alex Williamson's
   * 2016 pair of patches, "iommu/vt-d: Improve fault handler error messages" and "iommu/vt-d: Ratelimit fault
   * handler" (SUSE's bsc#975772 backport lists them as two commits); a0fe14d7dcf5, the id issue 9 gives, is
   * one of the two, and which one (and the other's id) was not found. Checked: a 4.2-4.6 log still shows two
   * lines; the release 4.7 is from the issue and the reference.
   */
  oneLineFault: '4.7',
  /**
   * `PASID %x` after the device (`ffffffff` for none) and the scalable-mode reason table 0x30-0x90:
   * "iommu/vt-d: Add Scalable Mode fault information" (Kyung Min Park). Checked: the patch mail
   * <1567793642-17063-1-git-send-email-kyung.min.park@intel.com> quotes the diff, and Joerg Roedel's
   * "IOMMU Updates for Linux v5.4" pull <20190916151342.GA7444@8bytes.org> lists it. Commit id not found.
   */
  pasidAndScalableReasons: '5.4',
  /**
   * `[%s NO_PASID]` / `[%s PASID 0x%x]`, `0x` on the address, the index and a hex reason, and `0x` on bus
   * and device: 719a19335692 "iommu/vt-d: Tweak the description of a DMA fault". Checked: its patch mail
   * (Lu Baolu's 5.14 batch, <20210610020115.1637656-4-baolu.lu@linux.intel.com>) and the Fixes: tag below.
   */
  hexReason: '5.14',
  /**
   * The `0x` on bus and device dropped again: 0b482d0c75bf "iommu/vt-d: Drop "0x" prefix from PCI bus &
   * device addresses" (Bjorn Helgaas, Fixes: 719a19335692), in Joerg Roedel's iommu-fixes-v5.15-rc3. So
   * 5.14 is the only release that prints `[0x00:0x02.0]` (5.14.y stable may carry the fix). Checked: the
   * patch mail, the pull request and the linux-next revision list; 6.1 and 6.12 sources print `[%02x:%02x.%d]`.
   */
  plainBus: '5.15',
  /**
   * Invalid descriptors print `qw0 = %llx, qw1 = %llx` instead of `low=%llx, high=%llx`: 5d308fc1ecf5
   * "iommu/vt-d: Add 256-bit invalidation descriptor support" (the id from a later Fixes: tag; the message
   * change is inferred from the desc->low/high to qw0/qw1 rename it made). Checked: 4.1 source has low=/high=,
   * the 5.10 source has qw0/qw1.
   */
  qiQwords: '5.0',
  /**
   * Invalidation errors report IQE/ITE/ICE with the IQER fields, the descriptors at the head and before it
   * (`QI HEAD:`/`QI PRIOR:`) and `... (IQE) cleared` lines; the old invalid-descriptor line is gone (before,
   * ITE and ICE printed nothing): 6ca69e5841f0 "iommu/vt-d: Report more information about invalidation
   * errors". Checked: its patch mail quotes the diff; it is in "IOMMU Updates for Linux v5.13"; 5.10 source
   * has the old line, 6.1 and 6.12 the new ones.
   */
  qiReport: '5.13',
  /**
   * `IOMMU: %s: PRQ overflow detected` / `... cleared` (before, PRO was cleared without a word):
   * 28a77185f1cd "iommu/vt-d: Clear PRQ overflow only when PRQ is empty" (v5.12; AUTOSEL-backported to 5.10.y
   * and 5.11.y). Checked: the stable review mail quotes the diff; the 5.10 (Debian) source has the lines.
   */
  prqOverflowLines: '5.12',
  /**
   * Privileged and execute-with-read page requests are rejected with `Unexpected page request in Privilege
   * Mode` (no newline in the source) and `Execution request not supported`: 78a523fe73b8 "iommu/vt-d: Reject
   * unsupported page request modes" (Jacob Pan; v5.13, backported to 5.12.y and 5.10.y). Checked: the 5.12
   * stable review mail quotes the diff; the 5.10 (Debian) source has the lines.
   */
  prqRejectModes: '5.13',
  /**
   * Page-request problems name the unit (`IOMMU: %s: Page request without PASID`, `... Address is not
   * canonical`, `... Page request in Privilege Mode`, `... Execution request not supported`) and every
   * rejected request prints `%s: Invalid page request: %08llx %08llx`; `Page request for invalid PASID` is
   * gone: ae7f09b14b4f "iommu/vt-d: Refactor prq_event_thread()" (Lu Baolu's 5.14 batch). Checked: its
   * patch mail quotes the diff and the linux-next revision list gives the id; 6.1 and 6.12 sources agree.
   */
  prqRefactor: '5.14',
  /**
   * Page requests without a PASID are no longer rejected (the `Page request without PASID` line is gone):
   * 9f831c16c69e "iommu/vt-d: Remove the pasid present check in prq_event_thread" (Klaus Jensen, in Lu
   * Baolu's batch of 2024-11-04 for 6.13). Checked: the patch mail and the linux-next revision list; the
   * 6.12 source still has the check.
   */
  prqPasidOptional: '6.13',
} as const satisfies Record<string, KernelVersion>;

/** The `pr_fmt` prefix of drivers/iommu/intel/dmar.c (and drivers/iommu/dmar.c before it). */
export function dmarPrefix(version: KernelVersion): string {
  return isAtLeast(version, FORMAT_CHANGES.upperCasePrefix) ? 'DMAR: ' : 'dmar: ';
}

/** Which `dmar_fault_do_one` format a kernel version prints. */
export type FaultLineFormat = 'two-line' | 'decimal' | 'pasid-decimal' | 'hex-0x-bus' | 'current';

export function faultLineFormat(version: KernelVersion): FaultLineFormat {
  if (!isAtLeast(version, FORMAT_CHANGES.oneLineFault)) return 'two-line';
  if (!isAtLeast(version, FORMAT_CHANGES.pasidAndScalableReasons)) return 'decimal';
  if (!isAtLeast(version, FORMAT_CHANGES.hexReason)) return 'pasid-decimal';
  if (!isAtLeast(version, FORMAT_CHANGES.plainBus)) return 'hex-0x-bus';
  return 'current';
}

/** The string and type `dmar_get_fault_reason` of that version returns for a code. */
export function faultReasonFor(code: number, version: KernelVersion): ReturnType<typeof linuxFaultReason> {
  return linuxFaultReason(code, { scalableModeTable: isAtLeast(version, FORMAT_CHANGES.pasidAndScalableReasons) });
}

/** Whether that version's `dmar_fault` is rate limited (DEFAULT_RATELIMIT_INTERVAL/BURST, `dmar_fault: N callbacks suppressed`). */
export function dmarFaultIsRatelimited(version: KernelVersion): boolean {
  return isAtLeast(version, FORMAT_CHANGES.oneLineFault);
}

export interface DmarFault {
  readonly sid: number;
  /** undefined: the request carried no PASID. */
  readonly pasid?: number;
  /** Fault address (FI): the faulting page for DMA faults, as hex without the prefix. */
  readonly address: string;
  readonly reason: number;
  readonly write: boolean;
  /** For interrupt-remapping faults: the interrupt index (FI >> 48). */
  readonly index?: number;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');
const bdf = (sid: number, prefix = '') => `${prefix}${hex2(sid >>> 8)}:${prefix}${hex2((sid >>> 3) & 0x1f)}.${sid & 7}`;
/** `%llx`: lowercase hex without leading zeros. */
const llx = (hex: string) => hex.toLowerCase().replace(/^0x/, '').replace(/^0+(?=.)/, '');

/**
 * The printk record(s) `dmar_fault_do_one` produces for one fault record: what follows the timestamp. Up to
 * 4.6 that is one record of two lines, the prefix on the first only.
 */
export function dmarFaultLines(f: DmarFault, version: KernelVersion): string[] {
  const { text, type } = faultReasonFor(f.reason, version);
  const format = faultLineFormat(version);
  const prefix = dmarPrefix(version);
  const dec = f.reason.toString(10).padStart(2, '0');
  const hex = '0x' + hex2(f.reason);
  const address = llx(f.address);
  if (type === 'interrupt-remap') {
    const idx = (f.index ?? 0).toString(16);
    switch (format) {
      case 'two-line':
        return [`${prefix}INTR-REMAP: Request device [[${bdf(f.sid)}] fault index ${idx}\nINTR-REMAP:[fault reason ${dec}] ${text}`];
      case 'decimal':
      case 'pasid-decimal':
        return [`${prefix}[INTR-REMAP] Request device [${bdf(f.sid)}] fault index ${idx} [fault reason ${dec}] ${text}`];
      case 'hex-0x-bus':
        return [`${prefix}[INTR-REMAP] Request device [${bdf(f.sid, '0x')}] fault index 0x${idx} [fault reason ${hex}] ${text}`];
      case 'current':
        return [`${prefix}[INTR-REMAP] Request device [${bdf(f.sid)}] fault index 0x${idx} [fault reason ${hex}] ${text}`];
    }
  }
  const kind = f.write ? 'DMA Write' : 'DMA Read';
  const tag = f.pasid === undefined ? `${kind} NO_PASID` : `${kind} PASID 0x${f.pasid.toString(16)}`;
  switch (format) {
    case 'two-line':
      return [`${prefix}DMAR:[${kind}] Request device [${bdf(f.sid)}] fault addr ${address} \nDMAR:[fault reason ${dec}] ${text}`];
    case 'decimal':
      return [`${prefix}[${kind}] Request device [${bdf(f.sid)}] fault addr ${address} [fault reason ${dec}] ${text}`];
    case 'pasid-decimal':
      return [`${prefix}[${kind}] Request device [${bdf(f.sid)}] PASID ${(f.pasid ?? 0xffff_ffff).toString(16)} fault addr ${address} [fault reason ${dec}] ${text}`];
    case 'hex-0x-bus':
      return [`${prefix}[${tag}] Request device [${bdf(f.sid, '0x')}] fault addr 0x${address} [fault reason ${hex}] ${text}`];
    case 'current':
      return [`${prefix}[${tag}] Request device [${bdf(f.sid)}] fault addr 0x${address} [fault reason ${hex}] ${text}`];
  }
}

/** `DRHD: handling fault status reg %x`, printed by `dmar_fault` before the records. */
export function faultStatusLine(fsts: number, version: KernelVersion): string {
  return `${dmarPrefix(version)}DRHD: handling fault status reg ${(fsts >>> 0).toString(16)}`;
}

/** What `alloc_iommu` prints for a unit at boot. */
export interface UnitBootInfo {
  /** `dmar%d`. */
  readonly name: string;
  readonly seq: number;
  /** Register base, hex without prefix. */
  readonly regBase: string;
  readonly version: readonly [number, number];
  /** CAP and ECAP, hex without prefix. */
  readonly cap: string;
  readonly ecap: string;
}

/** `%s: reg_base_addr %llx ver %d:%d cap %llx ecap %llx` (from 4.2; `IOMMU %d: ...` before). */
export function capabilityLine(u: UnitBootInfo, version: KernelVersion): string {
  const who = isAtLeast(version, FORMAT_CHANGES.upperCasePrefix) ? u.name : `IOMMU ${u.seq}`;
  return `${dmarPrefix(version)}${who}: reg_base_addr ${llx(u.regBase)} ver ${u.version[0]}:${u.version[1]} cap ${llx(u.cap)} ecap ${llx(u.ecap)}`;
}

/** `qi_type_string`: the name `qi_dump_fault` prints for a descriptor, from qw0 bits 3:0 only. */
export function qiTypeString(qw0: string): string {
  return linuxQiTypeName(parseInt(llx(qw0).slice(-1), 16));
}

/** An invalidation-queue error as `qi_check_fault` sees it: the FSTS bits, IQER and the two descriptors. */
export interface QiFault {
  readonly iqe: boolean;
  readonly ite: boolean;
  readonly ice: boolean;
  /** IQER fields: IQEI (3:0), ITESID (47:32), ICESID (63:48). */
  readonly iqei: number;
  readonly iteSid: number;
  readonly iceSid: number;
  /** qw0 and qw1 (hex, no prefix) of the descriptor at IQH and of the one before it. */
  readonly head: { readonly qw0: string; readonly qw1: string };
  readonly prior: { readonly qw0: string; readonly qw1: string };
}

/**
 * What `qi_check_fault` prints when it finds an error, before it clears anything: from 5.13 the report of
 * `qi_dump_fault`; before, only an IQE on the caller's own descriptor is printed, as that descriptor.
 */
export function qiFaultLines(q: QiFault, version: KernelVersion): string[] {
  const p = dmarPrefix(version);
  if (!isAtLeast(version, FORMAT_CHANGES.qiReport)) {
    if (!q.iqe) return [];
    return isAtLeast(version, FORMAT_CHANGES.qiQwords)
      ? [`${p}VT-d detected invalid descriptor: qw0 = ${llx(q.head.qw0)}, qw1 = ${llx(q.head.qw1)}`]
      : [`${p}VT-d detected invalid descriptor: low=${llx(q.head.qw0)}, high=${llx(q.head.qw1)}`];
  }
  const out: string[] = [];
  if (q.iqe) out.push(`${p}VT-d detected Invalidation Queue Error: Reason ${q.iqei.toString(16)}`);
  if (q.ite) out.push(`${p}VT-d detected Invalidation Time-out Error: SID ${q.iteSid.toString(16)}`);
  if (q.ice) out.push(`${p}VT-d detected Invalidation Completion Error: SID ${q.iceSid.toString(16)}`);
  const desc = (label: string, d: { qw0: string; qw1: string }) => `${p}QI ${label}: ${qiTypeString(d.qw0)} qw0 = 0x${llx(d.qw0)}, qw1 = 0x${llx(d.qw1)}`;
  out.push(desc('HEAD', q.head), desc('PRIOR', q.prior));
  return out;
}

/** The `(IQE) cleared` line of 5.13 and later (older kernels clear silently). */
export function qiClearedLine(error: 'IQE' | 'ITE' | 'ICE', version: KernelVersion): string | null {
  if (!isAtLeast(version, FORMAT_CHANGES.qiReport)) return null;
  const name = { IQE: 'Invalidation Queue Error', ITE: 'Invalidation Time-out Error', ICE: 'Invalidation Completion Error' }[error];
  return `${dmarPrefix(version)}${name} (${error}) cleared`;
}

/** Why `prq_event_thread` rejects a page request (the order of its checks is the caller's). */
export type PrqProblem = 'no-pasid' | 'not-canonical' | 'privileged' | 'exec-read' | 'unknown-pasid' | 'no-device';

/** Whether that version rejects a request for this reason at all (older kernels handled some normally). */
export function prqRejects(problem: PrqProblem, version: KernelVersion): boolean {
  switch (problem) {
    case 'no-pasid':
      return !isAtLeast(version, FORMAT_CHANGES.prqPasidOptional);
    case 'privileged':
    case 'exec-read':
      return isAtLeast(version, FORMAT_CHANGES.prqRejectModes);
    case 'unknown-pasid':
      return !isAtLeast(version, FORMAT_CHANGES.prqRefactor);
    default:
      return true;
  }
}

export interface PrqRequest {
  /** The unit's name, `dmar%d`. */
  readonly iommu: string;
  /** The first two descriptor qwords, hex without prefix. */
  readonly qw0: string;
  readonly qw1: string;
  readonly pasid: number;
}

/**
 * The lines `prq_event_thread` prints when it rejects a request (svm.c, prq.c from 6.13): from 5.14 a
 * problem line naming the unit (none when the device is unknown) and then, for every rejected request,
 * `%s: Invalid page request: %08llx %08llx`; before, one line per problem, some with the descriptor. No
 * `pr_fmt` applies (svm.c and prq.c define none).
 */
export function prqRejectLines(problem: PrqProblem, r: PrqRequest, version: KernelVersion): string[] {
  if (!prqRejects(problem, version)) return [];
  const words = `${llx(r.qw0).padStart(8, '0')} ${llx(r.qw1).padStart(8, '0')}`;
  if (isAtLeast(version, FORMAT_CHANGES.prqRefactor)) {
    const why: Partial<Record<PrqProblem, string>> = {
      'no-pasid': 'Page request without PASID',
      'not-canonical': 'Address is not canonical',
      privileged: 'Page request in Privilege Mode',
      'exec-read': 'Execution request not supported',
    };
    const first = why[problem];
    return [...(first ? [`IOMMU: ${r.iommu}: ${first}`] : []), `${r.iommu}: Invalid page request: ${words}`];
  }
  switch (problem) {
    case 'no-pasid':
      return [`${r.iommu}: Page request without PASID: ${words}`];
    case 'privileged':
      return ['Unexpected page request in Privilege Mode'];
    case 'exec-read':
      return ['Execution request not supported'];
    case 'unknown-pasid':
      return [`${r.iommu}: Page request for invalid PASID ${r.pasid}: ${words}`];
    default:
      // An unknown device or a non-canonical address went to the invalid response without a message.
      return [];
  }
}

/** `IOMMU: %s: PRQ overflow detected` / `... cleared` (5.12 and later; nothing before). */
export function prqOverflowLine(iommu: string, cleared: boolean, version: KernelVersion): string | null {
  if (!isAtLeast(version, FORMAT_CHANGES.prqOverflowLines)) return null;
  return `IOMMU: ${iommu}: PRQ overflow ${cleared ? 'cleared' : 'detected'}`;
}
