import * as assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Every line of the Linux log fixtures (test/fixtures/logs/) is one that the kernel version it is claimed for
 * prints: each must match, whole, a format string quoted from that version's source with the prefix its
 * printk adds (pr_fmt, dev_printk's `<driver> <device>: `). The claims and their sources are listed here and
 * in test/fixtures/logs/README.md; the expectations come from the kernel sources (5.10, 6.1 and 6.12 from
 * Debian's trees, older and newer lines from the patch mails that quote them), never from the readers.
 */

const root = join(__dirname, '../../..');
const lines = (name: string) => readFileSync(join(root, 'test/fixtures/logs', name), 'utf8').replace(/\n$/, '').split('\n');

/** A printf format as a whole-line regular expression, the way Linux's vsprintf fills it in. */
function printfRegex(fmt: string): RegExp {
  let re = '';
  for (let i = 0; i < fmt.length; ) {
    const m = fmt[i] === '%' ? /^%([-#0 +]*)(\d*)(hh|h|ll|l|L|z)?([sdiuxXc%])/.exec(fmt.slice(i)) : null;
    if (!m) {
      // A tab printed by the kernel may have become spaces on the way (mail quoting).
      re += fmt[i] === '\t' ? '\\s+' : fmt[i]!.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
      i++;
      continue;
    }
    const [all, flags, widthText, , conv] = m as unknown as [string, string, string, string, string];
    const width = widthText ? Number(widthText) : 0;
    const zero = flags.includes('0');
    const left = flags.includes('-');
    const alt = flags.includes('#');
    if (conv === '%') re += '%';
    else if (conv === 's') re += left && width ? `.{${width},}?` : '.*?';
    else if (conv === 'c') re += '.';
    else {
      const digit = conv === 'x' ? '[0-9a-f]' : conv === 'X' ? '[0-9A-F]' : '\\d';
      const first = conv === 'x' ? '[1-9a-f]' : conv === 'X' ? '[1-9A-F]' : '[1-9]';
      const sign = conv === 'd' || conv === 'i' ? '-?' : '';
      // No leading zeros unless zero-padded to a width (which counts the 0x of `%#x`; `%#x` of 0 is 0x0 in Linux).
      const w = Math.max(1, width - (alt ? 2 : 0));
      const digits = zero && width ? `(?:${digit}{${w}}|${first}${digit}{${w},})` : `(?:0|${first}${digit}*)`;
      const body = `${sign}${alt ? '0x' : ''}${digits}`;
      re += zero || !width ? body : left ? `${body} *` : ` *${body}`;
    }
    i += all.length;
  }
  return new RegExp(`^${re}$`);
}

/** The message of a captured line: without the dmesg timestamp (and caller id), mail quoting, or the indent util-linux dmesg gives a record's later lines. */
function message(line: string): string {
  return line.replace(/^(?:> ?)+/, '').replace(/^\[ *\d+\.\d{6}\](?:\[ *[TC]\d+\])? /, '').replace(/^ +(?=\S)/, '');
}

interface Claim {
  /** First and last fixture line (1-based) the claim covers. */
  readonly lines: readonly [number, number];
  /** The kernel versions that print these lines, and why these versions. */
  readonly kernel: string;
  /** Format strings with their printk prefix, each with where it was read. */
  readonly formats: readonly (readonly [format: string, source: string])[];
  /** Join the lines into one message first (a record a mail client wrapped). */
  readonly joined?: boolean;
  /** Runs of spaces are one space (trace text aligns its columns with them). */
  readonly squeeze?: boolean;
  /** Lines whose format could not be checked against a source: why, instead of formats. */
  readonly unverified?: string;
}

// ---- Linux VT-d (drivers/iommu/intel/, formerly drivers/iommu/dmar.c and intel-iommu.c) ----

const VTD_BOOT_612: Claim['formats'] = [
  ['DMAR: Host address width %d', '6.12 dmar.c:673'],
  ['DMAR: DRHD base: %#016Lx flags: %#x', '6.12 dmar.c:534'],
  ['DMAR: %s: reg_base_addr %llx ver %d:%d cap %llx ecap %llx', '6.12 dmar.c:1115'],
  ['DMAR-IR: IOAPIC id %d under DRHD base  0x%Lx IOMMU %d', '6.12 irq_remapping.c:918'],
  ['DMAR: Intel(R) Virtualization Technology for Directed I/O', '6.12 iommu.c:3379'],
];
const RATELIMIT: Claim['formats'] = [['%s: %d callbacks suppressed', 'lib/ratelimit.c ___ratelimit()']];
const VTD_FAULT_612: Claim['formats'] = [
  ['DMAR: DRHD: handling fault status reg %x', '6.12 dmar.c:1971'],
  ['DMAR: [INTR-REMAP] Request device [%02x:%02x.%d] fault index 0x%llx [fault reason 0x%02x] %s', '6.12 dmar.c:1931'],
  ['DMAR: [%s NO_PASID] Request device [%02x:%02x.%d] fault addr 0x%llx [fault reason 0x%02x] %s', '6.12 dmar.c:1940'],
  ['DMAR: [%s PASID 0x%x] Request device [%02x:%02x.%d] fault addr 0x%llx [fault reason 0x%02x] %s', '6.12 dmar.c:1946'],
];
/** dmar_fault_dump_ptes() and pgtable_walk() with the 6.13 fixes (6ceb93f952f6, f1645676f25d), as 6.12.118 has them. */
const VTD_DUMP_613: Claim['formats'] = [
  ['DMAR: Dump %s table entries for IOVA 0x%llx', '6.12 iommu.c:747'],
  ['DMAR: root table is not present', '6.12 iommu.c:751'],
  ['DMAR: scalable mode root entry: hi 0x%016llx, low 0x%016llx', '6.12 iommu.c:757'],
  ['DMAR: root entry: 0x%016llx', '6.12 iommu.c:760'],
  ['DMAR: context table is not present', '6.12 iommu.c:765'],
  ['DMAR: context entry: hi 0x%016llx, low 0x%016llx', '6.12 iommu.c:769'],
  ['DMAR: legacy mode page table is not present', '6.12 iommu.c:775'],
  ['DMAR: pasid directory table is not present', '6.12 iommu.c:784'],
  ['DMAR: pasid dir entry: 0x%016llx', '6.12 iommu.c:797'],
  ['DMAR: pasid table is not present', '6.12 iommu.c:802'],
  ['DMAR: pasid table entry[%d]: 0x%016llx', '6.12 iommu.c:809'],
  ['DMAR: scalable mode page table is not present', '6.12 iommu.c:812'],
  ['DMAR: pte level: %d, pte value: 0x%016llx', '6.12 iommu.c:720'],
  ['DMAR: page table not present at level %d', '6.12 iommu.c:723'],
];
/** The lines those fixes replaced (5.16-6.12 before the stable backports), as the fixes' diffs quote them. */
const VTD_DUMP_516: Claim['formats'] = [
  ['DMAR: Dump %s table entries for IOVA 0x%llx', 'unchanged by 6ceb93f952f6'],
  ['DMAR: root entry: 0x%016llx', 'unchanged by 6ceb93f952f6'],
  ['DMAR: root table entry is not present', "6ceb93f952f6's - line"],
  ['DMAR: context entry: hi 0x%016llx, low 0x%016llx', 'unchanged by 6ceb93f952f6'],
  ['DMAR: context table entry is not present', "6ceb93f952f6's - line"],
  ['DMAR: pte level: %d, pte value: 0x%016llx', 'unchanged by f1645676f25d'],
  ['DMAR: PTE not present at level %d', "f1645676f25d's - line"],
];
const VTD_QI_513: Claim['formats'] = [
  ['DMAR: VT-d detected Invalidation Queue Error: Reason %llx', '6.12 dmar.c:1257'],
  ['DMAR: VT-d detected Invalidation Time-out Error: SID %llx', '6.12 dmar.c:1260'],
  ['DMAR: VT-d detected Invalidation Completion Error: SID %llx', '6.12 dmar.c:1263'],
  ['DMAR: QI HEAD: %s qw0 = 0x%llx, qw1 = 0x%llx', '6.12 dmar.c:1266'],
  ['DMAR: QI PRIOR: %s qw0 = 0x%llx, qw1 = 0x%llx', '6.12 dmar.c:1275'],
  ['DMAR: Invalidation Queue Error (IQE) cleared', '6.12 dmar.c:1315'],
  ['DMAR: Invalidation Time-out Error (ITE) cleared', '6.12 dmar.c:1338'],
  ['DMAR: Invalidation Completion Error (ICE) cleared', '6.12 dmar.c:1365'],
];
/** prq.c (svm.c before 6.13) has no pr_fmt: its messages carry no `DMAR: `. */
const VTD_PRQ_612: Claim['formats'] = [
  ['%s: Invalid page request: %08llx %08llx', '6.12 prq.c:140'],
  ['IOMMU: %s: Page request without PASID', '6.12 prq.c:218 (gone in 6.13, 9f831c16c69e)'],
  ['IOMMU: %s: Address is not canonical', '6.12 prq.c:226'],
  ['IOMMU: %s: Page request in Privilege Mode', '6.12 prq.c:232'],
  ['IOMMU: %s: Execution request not supported', '6.12 prq.c:238'],
  ['IOMMU: %s: PRQ overflow detected', '6.12 prq.c:274'],
  ['IOMMU: %s: PRQ overflow cleared', '6.12 prq.c:281'],
];

const VTD_6X: Claim[] = [
  { lines: [1, 7], kernel: 'Linux 6.13 and later (boot)', formats: VTD_BOOT_612 },
  { lines: [8, 8], kernel: 'Linux 4.7 and later (dmar_fault is rate limited)', formats: RATELIMIT },
  { lines: [9, 51], kernel: 'Linux 6.13 and later (CONFIG_DMAR_DEBUG; 6.12.y, 6.6.y and 6.1.y with the dump fixes)', formats: [...VTD_FAULT_612, ...VTD_DUMP_613, ...VTD_QI_513] },
  // Line 54 is a request without PASID printed alone: 6.13 and later no longer reject those (9f831c16c69e).
  { lines: [52, 56], kernel: 'Linux 6.13 and later', formats: VTD_PRQ_612 },
  { lines: [57, 57], kernel: 'Linux 2.6.x and later (__domain_mapping)', formats: [['DMAR: ERROR: DMA PTE for vPFN 0x%lx already set (to %llx not %llx)', '6.12 intel/iommu.c:1878 (the same in 5.10 and 6.1)']] },
  { lines: [58, 58], kernel: 'Linux 6.11 and later (iommu_report_device_fault)', formats: [['%s %s: iopf with pasid %d aborted', '6.12 io-pgfault.c:268 (dev_warn_ratelimited)']] },
  { lines: [59, 59], kernel: 'not an IOMMU line (e1000e)', formats: [['%s %s %s: NIC Link is Up %d Mbps %s Duplex, Flow Control: %s', 'drivers/net/ethernet/intel/e1000e/netdev.c']] },
];

const VTD_5X: Claim[] = [
  { lines: [1, 1], kernel: 'Linux 5.x', formats: [['DMAR: DRHD: handling fault status reg %x', '5.10 dmar.c:1877']] },
  {
    lines: [2, 4],
    kernel: 'Linux 5.14 only (719a19335692 added the 0x, 0b482d0c75bf dropped it from bus and device in 5.15)',
    formats: [
      ['DMAR: [%s NO_PASID] Request device [0x%02x:0x%02x.%d] fault addr 0x%llx [fault reason 0x%02x] %s', "719a19335692's + line"],
      ['DMAR: [%s PASID 0x%x] Request device [0x%02x:0x%02x.%d] fault addr 0x%llx [fault reason 0x%02x] %s', "719a19335692's + line"],
      ['DMAR: [INTR-REMAP] Request device [0x%02x:0x%02x.%d] fault index 0x%llx [fault reason 0x%02x] %s', "719a19335692's + line"],
    ],
  },
  { lines: [5, 5], kernel: 'Linux 5.x', formats: [['DMAR: DRHD: handling fault status reg %x', '5.10 dmar.c:1877']] },
  {
    lines: [6, 8],
    kernel: 'Linux 5.4-5.13',
    formats: [
      ['DMAR: [%s] Request device [%02x:%02x.%d] PASID %x fault addr %llx [fault reason %02d] %s', '5.10 dmar.c:1855'],
      ['DMAR: [INTR-REMAP] Request device [%02x:%02x.%d] fault index %llx [fault reason %02d] %s', '5.10 dmar.c:1850'],
    ],
  },
  { lines: [9, 9], kernel: 'Linux 5.0-5.3 (the one-line form of 4.7, before the PASID of 5.4)', formats: [['DMAR: [%s] Request device [%02x:%02x.%d] fault addr %llx [fault reason %02d] %s', "the - line of the 5.4 patch (checked by kernel-versions.test.ts)"]] },
  {
    lines: [10, 11],
    kernel: 'Linux 4.4-5.13 (svm.c has no pr_fmt)',
    formats: [
      ['%s: Page request without PASID: %08llx %08llx', '5.10 svm.c:920'],
      ['%s: Page request for invalid PASID %d: %08llx %08llx', '5.10 svm.c:944'],
    ],
  },
  {
    lines: [12, 13],
    kernel: 'Linux 5.13, 5.12.y and 5.10.y (78a523fe73b8; no pr_fmt, no unit name)',
    formats: [
      ['Unexpected page request in Privilege Mode', '5.10 svm.c:927'],
      ['Execution request not supported', '5.10 svm.c:933'],
    ],
  },
  { lines: [14, 14], kernel: 'Linux 5.0-5.12 (5d308fc1ecf5 to 6ca69e5841f0)', formats: [['DMAR: VT-d detected invalid descriptor: qw0 = %llx, qw1 = %llx', '5.10 dmar.c:1231']] },
];

/** dmar_fault_do_one() up to 4.6: one printk of two lines; the pr_fmt prefix only before the first. */
const TWO_LINE = (prefix: string): Claim['formats'] => [
  [`${prefix}DMAR:[%s] Request device [%02x:%02x.%d] fault addr %llx `, 'dmar.c of 4.1 (axxia/axxia_yocto_linux_4.1)'],
  ['DMAR:[fault reason %02d] %s', 'the same printk, second line'],
  [`${prefix}INTR-REMAP: Request device [[%02x:%02x.%d] fault index %llx`, 'dmar.c of 4.1'],
  ['INTR-REMAP:[fault reason %02d] %s', 'the same printk, second line'],
];
const VTD_LEGACY: Claim[] = [
  // Line 2 is syslog's reading (`dmesg -S`): each line of the record gets the header.
  { lines: [1, 2], kernel: 'Linux <= 4.1 (pr_fmt KBUILD_MODNAME ": ")', formats: TWO_LINE('dmar: ') },
  // Line 4 is util-linux dmesg's: the record's second line indented by the width of the timestamp.
  { lines: [3, 4], kernel: 'Linux 4.2-4.6 (pr_fmt "DMAR: ")', formats: TWO_LINE('DMAR: ') },
  // `dmesg -t`: no timestamp, so no indent either.
  { lines: [5, 6], kernel: 'Linux <= 4.1', formats: TWO_LINE('dmar: ') },
  { lines: [7, 7], kernel: 'Linux <= 4.1 (low=/high= until 5d308fc1ecf5, 5.0)', formats: [['dmar: VT-d detected invalid descriptor: low=%llx, high=%llx', 'dmar.c of 4.1']] },
  { lines: [8, 8], kernel: 'Linux 4.7-5.3', formats: [['DMAR: [%s] Request device [%02x:%02x.%d] fault addr %llx [fault reason %02d] %s', "the - line of the 5.4 patch (checked by kernel-versions.test.ts)"]] },
];

const VTD_WALK_ONLY: Claim[] = [
  { lines: [1, 6], kernel: 'Linux 5.16-6.12 before the 6.13 dump fixes (legacy mode)', formats: VTD_DUMP_516 },
  { lines: [7, 9], kernel: 'Linux 6.13 and later (and the 6.12.y, 6.6.y, 6.1.y backports)', formats: VTD_DUMP_613 },
];

// ---- AMD-Vi (drivers/iommu/amd/, formerly drivers/iommu/amd_iommu*.c) ----

const AMD_612: Claim['formats'] = [
  ['%s %s: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x%04x address=0x%llx flags=0x%04x]', '6.12 iommu.c:885 (pci_err, dev_fmt)'],
  ['AMD-Vi: Event logged [IO_PAGE_FAULT device=%04x:%02x:%02x.%x domain=0x%04x address=0x%llx flags=0x%04x]', '6.12 iommu.c:889'],
  ['%s %s: AMD-Vi: Event logged [ILLEGAL_DEV_TABLE_ENTRY device=%04x:%02x:%02x.%x pasid=0x%05x address=0x%llx flags=0x%04x]', '6.12 iommu.c:963 (dev_err of iommu ivhdN)'],
  ['%s %s: AMD-Vi: Event logged [ILLEGAL_COMMAND_ERROR address=0x%llx]', '6.12 iommu.c:980'],
  ['AMD-Vi: CMD[%d]: %08x', '6.12 iommu.c:774'],
  ['AMD-Vi: DTE[%d]: %016llx', '6.12 iommu.c:765'],
  ['%s %s: AMD-Vi: Event logged [IOTLB_INV_TIMEOUT device=%04x:%02x:%02x.%x address=0x%llx]', '6.12 iommu.c:988'],
  ['%s %s: AMD-Vi: Event logged [INVALID_DEVICE_REQUEST device=%04x:%02x:%02x.%x pasid=0x%05x address=0x%llx flags=0x%04x]', '6.12 iommu.c:993'],
  ['%s %s: AMD-Vi: Event logged [INVALID_PPR_REQUEST device=%04x:%02x:%02x.%x pasid=0x%05x address=0x%llx flags=0x%04x tag=0x%03x]', '6.12 iommu.c:907'],
  ['%s %s: AMD-Vi: Event logged [DEV_TAB_HARDWARE_ERROR device=%04x:%02x:%02x.%x address=0x%llx flags=0x%04x]', '6.12 iommu.c:969'],
  ['%s %s: AMD-Vi: Event logged [PAGE_TAB_HARDWARE_ERROR device=%04x:%02x:%02x.%x pasid=0x%04x address=0x%llx flags=0x%04x]', '6.12 iommu.c:975'],
  ['%s %s: AMD-Vi: Event logged [COMMAND_HARDWARE_ERROR address=0x%llx flags=0x%04x]', '6.12 iommu.c:984'],
  ['%s %s: AMD-Vi: Event logged [RMP_PAGE_FAULT vmg_tag=0x%04x, gpa=0x%llx, flags_rmp=0x%04x, flags=0x%04x]', '6.12 iommu.c:829'],
  ['AMD-Vi: Event logged [Device not attached to domain properly]', '6.12 iommu.c:869'],
  ['AMD-Vi:   device=%04x:%02x:%02x.%x domain=0x%04x', '6.12 iommu.c:870'],
  ['%s %s: AMD-Vi: Event logged [UNKNOWN event[0]=0x%08x event[1]=0x%08x event[2]=0x%08x event[3]=0x%08x', '6.12 iommu.c:1007'],
  ['AMD-Vi: Completion-Wait loop timed out', '6.12 iommu.c:1217'],
  ['AMD-Vi: No event written to event log', '6.12 iommu.c:949'],
  ['amd_iommu_report_page_fault: %d callbacks suppressed', 'lib/ratelimit.c, called from amd_iommu_report_page_fault()'],
];
/** dev_err()/pr_err() with `AMD-Vi: ` in the string, before 1a21ee1aabf7 (its - lines): %016llx addresses, no segment. */
const AMD_DEV_ERR_ERA: Claim['formats'] = [
  ['%s %s: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x%04x address=0x%016llx flags=0x%04x]', "1a21ee1aabf7's - line"],
  ['AMD-Vi: Event logged [IO_PAGE_FAULT device=%02x:%02x.%x domain=0x%04x address=0x%016llx flags=0x%04x]', "1a21ee1aabf7's context line"],
];
const AMD_VI: Claim[] = [
  {
    lines: [1, 4],
    kernel: 'Linux 5.10 (pci_info, pr_fmt "AMD-Vi: "; one EFR value in `Extended features`, two from 6.1)',
    formats: [
      ['%s %s: AMD-Vi: IOMMU performance counters supported', '5.10 init.c:1797'],
      ['%s %s: AMD-Vi: Found IOMMU cap 0x%x', '5.10 init.c:1984 (%hx)'],
      ['AMD-Vi: Extended features (%#llx):%s', '5.10 init.c:1987 and its pr_cont(" %s") of the feature names'],
      ['AMD-Vi: Interrupt remapping enabled', '5.10 init.c:2001'],
    ],
  },
  { lines: [5, 7], kernel: 'Linux ~4.17 until 1a21ee1aabf7 (release not pinned; in stable review 2019-12-11)', formats: AMD_DEV_ERR_ERA },
  { lines: [8, 11], kernel: 'Linux 6.x (segment in device=, b36a5b0f1ced)', formats: AMD_612 },
  { lines: [12, 12], kernel: 'Linux 5.x before 6.0 (no segment, %llx address)', formats: [['AMD-Vi: Event logged [IO_PAGE_FAULT device=%02x:%02x.%x domain=0x%04x address=0x%llx flags=0x%04x]', '5.10 iommu.c:564']] },
  { lines: [13, 18], kernel: 'Linux newer than 6.12 (the Control Reg line)', formats: [...AMD_612, ['%s %s: AMD-Vi: Control Reg : 0x%llx', 'mainline after 6.12 (dev_err after ILLEGAL_DEV_TABLE_ENTRY), commit not pinned']] },
  { lines: [19, 27], kernel: 'Linux ~3.x with the 8 x 32-bit DTE dump', formats: [], unverified: 'no source of a kernel that dumped the DTE as eight 32-bit words was found: the format is from the reader\'s history, not checked' },
  { lines: [28, 45], kernel: 'Linux 6.x; line 43 mainline after 6.12', formats: [...AMD_612, ['AMD-Vi: IOMMU %04x:%02x:%02x.%01x: Completion-Wait loop timed out', 'mainline after 6.12 (patch mails quote the + line), commit not pinned']] },
  { lines: [46, 47], kernel: 'Linux ~4.9-4.16', formats: [], unverified: 'printk("AMD-Vi: Event logged [") then the body without KERN_CONT (split since 4.9): no source of those kernels was found' },
  {
    lines: [48, 49],
    kernel: 'Linux 5.x before 6.0 (no segment, %llx address); a mail client wrapped the line',
    joined: true,
    formats: [['AMD-Vi: Event logged [IO_PAGE_FAULT device=%02x:%02x.%x domain=0x%04x address=0x%llx flags=0x%04x]', '5.10 iommu.c:564']],
  },
  { lines: [50, 50], kernel: 'Linux after 1a21ee1aabf7 and before dev_fmt (not pinned)', formats: [['%s %s: Event logged [IO_PAGE_FAULT domain=0x%04x address=0x%016llx flags=0x%04x]', "1a21ee1aabf7's + line"]] },
];

// ---- Arm SMMUv3 (drivers/iommu/arm/arm-smmu-v3/arm-smmu-v3.c) ----

const SMMU = '%s %s: ';
const SMMU_612: Claim['formats'] = [
  [`${SMMU}event 0x%02x received:`, '6.12 arm-smmu-v3.c:1856'],
  [`${SMMU}\t0x%016llx`, '6.12 arm-smmu-v3.c:1858'],
  [`${SMMU}EVTQ overflow detected -- events lost`, '6.12 arm-smmu-v3.c:1869'],
  ['arm_smmu_evtq_thread: %d callbacks suppressed', 'lib/ratelimit.c, called from arm_smmu_evtq_thread() up to 6.13'],
  [`${SMMU}unexpected global error reported (0x%08x), this could be serious`, '6.12 arm-smmu-v3.c:1950'],
  [`${SMMU}device has entered Service Failure Mode!`, '6.12 arm-smmu-v3.c:1954'],
  [`${SMMU}CMDQ error (cons 0x%08x): %s`, '6.12 arm-smmu-v3.c:410'],
  [`${SMMU}skipping command in error state:`, '6.12 arm-smmu-v3.c:437'],
  [`${SMMU}unexpected PRI request received:`, '6.12 arm-smmu-v3.c:1889'],
  [`${SMMU}\tsid 0x%08x.0x%05x: [%u%s] %sprivileged %s%s%s access at iova 0x%016llx`, '6.12 arm-smmu-v3.c:1891'],
  [`${SMMU}ias %lu-bit, oas %lu-bit (features 0x%08x)`, '6.12 arm-smmu-v3.c:4405'],
  [`${SMMU}CMD_SYNC timeout at 0x%08x [hwprod 0x%08x, hwcons 0x%08x]`, '6.12 arm-smmu-v3.c:879'],
];
/** arm_smmu_dump_event() of d814b70b9b90 "iommu/arm-smmu-v3: Log better event records" (6.14), after the raw record. */
const SMMU_DECODED: Claim['formats'] = [
  [`${SMMU}event 0x%02x received:`, 'arm_smmu_dump_raw_event()'],
  [`${SMMU}\t0x%016llx`, 'arm_smmu_dump_raw_event()'],
  [`${SMMU}event: %s client: %s sid: %#x ssid: %#x iova: %#llx ipa: %#llx`, 'arm_smmu_dump_event()'],
  [`${SMMU}%s %s %s %s "%s"%s%s stag: %#x`, 'arm_smmu_dump_event()'],
  [`${SMMU}event: %s client: %s sid: %#x ssid: %#x fetch_addr: %#llx`, 'arm_smmu_dump_event()'],
  [`${SMMU}event: %s client: %s sid: %#x ssid: %#x`, 'arm_smmu_dump_event()'],
];
const SMMU_V3: Claim[] = [
  { lines: [1, 7], kernel: 'Linux 6.14 and later', formats: SMMU_DECODED },
  { lines: [8, 12], kernel: 'Linux 4.2-6.13 (the raw record alone)', formats: SMMU_612 },
  { lines: [13, 24], kernel: 'Linux 6.14 and later', formats: SMMU_DECODED },
  // An excerpt that starts after the raw record (the kernel prints both under one rate limit).
  { lines: [25, 26], kernel: 'Linux 6.14 and later', formats: SMMU_DECODED },
  { lines: [27, 29], kernel: 'Linux 6.14 and later; a mail client wrapped it', joined: true, formats: SMMU_DECODED },
  { lines: [30, 31], kernel: 'Linux 6.14 and later; a mail client wrapped it', joined: true, formats: SMMU_DECODED },
  { lines: [32, 53], kernel: 'Linux 5.10-6.13 (quoted by mail at 32-36)', formats: SMMU_612 },
];

// ---- Tracepoints (drivers/iommu/intel/trace.h, include/trace/events/iommu.h) ----

const FTRACE_HEAD = '%s-%d [%03d] %s %d.%06d: ';
const INTEL_IOMMU_FTRACE: Claim[] = [
  { lines: [1, 6], kernel: 'ftrace header', formats: [['# tracer: nop', 'kernel/trace/trace.c'], ['# entries-in-buffer/entries-written: %lu/%lu   #P:%d', 'kernel/trace/trace.c'], ['#%s', 'kernel/trace/trace.c column header']] },
  {
    lines: [7, 17],
    squeeze: true,
    kernel: 'Linux 6.10 and later (cache_tag_*: 446a68c58d2e; map/unmap with the end address: 94aedac49d92, 5.17)',
    formats: [
      [`${FTRACE_HEAD}qi_submit: %s %s: 0x%llx 0x%llx 0x%llx 0x%llx`, '6.12 trace.h:42 (f2dd871799ba, 5.12)'],
      [`${FTRACE_HEAD}prq_report: %s/%s seq# %ld: rid=0x%llx addr=0x%llx %c%c%c%c%c pasid=0x%llx index=0x%llx`, '6.12 trace.h:86, iommu.h decode_prq_descriptor() (e93a67f5a0ee, 5.14)'],
      [`${FTRACE_HEAD}cache_tag_assign: %s/%s type %s did %d pasid %d ref %d`, '6.12 trace.h:112'],
      [`${FTRACE_HEAD}cache_tag_flush_range: %s %s[%d] type %s did %d [0x%lx-0x%lx] addr 0x%lx pages 0x%lx mask 0x%lx`, '6.12 trace.h:166'],
      [`${FTRACE_HEAD}map: IOMMU: iova=0x%016llx - 0x%016llx paddr=0x%016llx size=%zu`, 'include/trace/events/iommu.h (94aedac49d92)'],
      [`${FTRACE_HEAD}unmap: IOMMU: iova=0x%016llx - 0x%016llx size=%zu unmapped_size=%zu`, 'include/trace/events/iommu.h (94aedac49d92)'],
      [`${FTRACE_HEAD}add_device_to_group: IOMMU: groupID=%d device=%s`, 'include/trace/events/iommu.h'],
      [`${FTRACE_HEAD}attach_device_to_domain: IOMMU: device=%s`, 'include/trace/events/iommu.h'],
      // report_iommu_fault() traces it (AMD-Vi, SMMUv2 and others; intel-iommu never calls it).
      [`${FTRACE_HEAD}io_page_fault: IOMMU:%s %s iova=0x%016llx flags=0x%04x`, 'include/trace/events/iommu.h'],
    ],
  },
  { lines: [18, 18], kernel: 'perf script of the same tracepoint', squeeze: true, formats: [['%s %d [%03d] %d.%06d: intel_iommu:qi_submit: %s %s: 0x%llx 0x%llx 0x%llx 0x%llx', 'perf script default fields, trace.h:42']] },
];

const FIXTURES: Record<string, readonly Claim[]> = {
  'vtd-6x.log': VTD_6X,
  'vtd-5x.log': VTD_5X,
  'vtd-legacy.log': VTD_LEGACY,
  'vtd-walk-only.log': VTD_WALK_ONLY,
  'amd-vi.log': AMD_VI,
  'smmu-v3.log': SMMU_V3,
  'intel-iommu.ftrace': INTEL_IOMMU_FTRACE,
};

describe('fixtures: every log line is one its kernel prints', () => {
  it('turns format strings into the text vsprintf makes of them', () => {
    assert.ok(printfRegex('DRHD base: %#016Lx flags: %#x').test('DRHD base: 0x000000fed90000 flags: 0x0'));
    assert.ok(!printfRegex('DRHD base: %#016Lx flags: %#x').test('DRHD base: 0xfed90000 flags: 0x0'));
    assert.ok(printfRegex('[%02x:%02x.%d] %s').test('[00:1f.0] x'));
    assert.ok(!printfRegex('[%02x:%02x.%d]').test('[0x00:0x1f.0]'));
    assert.ok(printfRegex('%-5d|').test('17   |') && !printfRegex('%5d|').test('17   |'));
    assert.ok(printfRegex('address=0x%016llx]').test('address=0x00000000fdeaf000]') && !printfRegex('address=0x%016llx]').test('address=0xfdeaf000]'));
    assert.ok(printfRegex('address=0x%llx]').test('address=0xfdeaf000]') && !printfRegex('address=0x%llx]').test('address=0x00000000fdeaf000]'));
    assert.ok(printfRegex('reg %x').test('reg 0') && printfRegex('[%02d]').test('[113]') && !printfRegex('[%02d]').test('[0113]'));
  });

  for (const [name, claims] of Object.entries(FIXTURES)) {
    it(`${name}: each line matches a format of the version it is claimed for`, () => {
      const text = lines(name);
      const covered = new Set<number>();
      for (const claim of claims) {
        const [from, to] = claim.lines;
        for (let n = from; n <= to; n++) {
          assert.ok(!covered.has(n), `${name}:${n} is claimed twice`);
          covered.add(n);
        }
        if (claim.unverified) continue;
        const regexes = claim.formats.map(([f]) => printfRegex(f));
        const own = text.slice(from - 1, to).map(message).map((m) => (claim.squeeze ? m.replace(/ {2,}/g, ' ') : m));
        const messages = claim.joined ? [own.join(' ')] : own;
        messages.forEach((m, i) => {
          assert.ok(regexes.some((r) => r.test(m)), `${name}:${from + (claim.joined ? 0 : i)} (${claim.kernel}) matches none of its formats: ${JSON.stringify(m)}`);
        });
      }
      assert.deepEqual([...covered].sort((a, b) => a - b), text.map((_, i) => i + 1), `${name}: every line has a claim`);
    });
  }
});
