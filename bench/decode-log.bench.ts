// decode-log on a generated 1 GB kernel log, against `grep -c DMAR` on the same file in the same run, and
// its peak memory on 1 GB against 64 MB (the same ratio ~1 means memory does not grow with the input).
//
// The log is what a long-running machine with IOMMU trouble leaves in its journal: ordinary kernel and
// service lines, with bursts of IOMMU faults from all three vendors (the kernel rate-limits them, so a
// burst is ~10 faults followed by a `callbacks suppressed` line), walk dumps, invalidation-queue errors,
// page requests, SMMU event records and capability lines. About 1% of the lines are IOMMU lines.
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { report, rng } from './lib';

const root = join(__dirname, '../..');
const cli = join(root, 'dist/cli.js');

const NOISE = [
  'usb 1-1: new high-speed USB device number %d using xhci_hcd',
  'EXT4-fs (nvme0n1p2): mounted filesystem with ordered data mode. Quota mode: none.',
  'audit: type=1400 audit(1700000000.%d:45): apparmor="STATUS" operation="profile_load" profile="unconfined" name="/usr/bin/man" pid=%d comm="apparmor_parser"',
  'e1000e 0000:00:1f.6 eno1: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: Rx/Tx',
  'nvme nvme0: 16/0/0 default/read/poll queues',
  'systemd[1]: Started Session %d of User root.',
  'IPv6: ADDRCONF(NETDEV_CHANGE): eno1: link becomes ready',
  'perf: interrupt took too long (2503 > 2500), lowering kernel.perf_event_max_sample_rate to 79800',
  'kvm: vcpu %d, guest rIP: 0xffffffff81070ab2 disabled perfctr wrmsr: 0xc2 data 0xffff',
  'i915 0000:00:02.0: [drm] GuC firmware i915/tgl_guc_70.bin version 70.1.1',
  'xhci_hcd 0000:00:14.0: xHCI Host Controller',
  'CPU%d: Package temperature above threshold, cpu clock throttled (total events = %d)',
];

/** What a machine in trouble prints, with how often each kind of burst comes. */
const BURSTS: [weight: number, lines: (n: () => number) => string[]][] = [
  [30, (n) => {
    const out: string[] = [];
    for (let i = 0; i < 10; i++) {
      out.push(`DMAR: DRHD: handling fault status reg ${(2 + (i % 3) * 0x100).toString(16)}`);
      out.push(`DMAR: [DMA ${i % 2 ? 'Write' : 'Read'} NO_PASID] Request device [${(n() % 256).toString(16).padStart(2, '0')}:00.0] fault addr 0x${(n() * 4096).toString(16)} [fault reason 0x06] PTE Read access is not set`);
    }
    out.push(`dmar_fault: ${n() % 500} callbacks suppressed`);
    return out;
  }],
  [5, (n) => [
    'DMAR: [DMA Read PASID 0x2] Request device [6a:01.0] fault addr 0x7f0012345000 [fault reason 0x71] SM: Present bit in first-level paging entry is clear',
    'DMAR: Dump dmar3 table entries for IOVA 0x7f0012345000',
    'DMAR: scalable mode root entry: hi 0x0000000000000000, low 0x00000001049a0001',
    'DMAR: context entry: hi 0x0000000000000000, low 0x000000010ab3c20f',
    'DMAR: pasid dir entry: 0x000000010ab3d001',
    ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `DMAR: pasid table entry[${i}]: 0x${i === 0 ? '0000000000000049' : i === 2 ? '000000010ab3e000' : '0000000000000000'}`),
    `DMAR: pte level: 4, pte value: 0x${(n() * 4096 + 0x67).toString(16).padStart(16, '0')}`,
    'DMAR: page table not present at level 2',
  ]],
  [25, (n) => {
    const out: string[] = [];
    for (let i = 0; i < 10; i++) out.push(`amdgpu 0000:0b:00.0: AMD-Vi: Event logged [IO_PAGE_FAULT domain=0x000c address=0x${(n() * 4096).toString(16)} flags=0x0020]`);
    out.push(`amd_iommu_report_page_fault: ${n() % 300} callbacks suppressed`);
    return out;
  }],
  [5, () => [
    'iommu ivhd0: AMD-Vi: Event logged [ILLEGAL_DEV_TABLE_ENTRY device=0000:00:14.0 pasid=0x00000 address=0xfffffffdf8000000 flags=0x0a00]',
    'iommu ivhd0: AMD-Vi: Control Reg : 0xc22000000082fbd',
    'AMD-Vi: DTE[0]: 6000000000000003',
    'AMD-Vi: DTE[1]: 0000000000000000',
    'AMD-Vi: DTE[2]: 0000000000000000',
    'AMD-Vi: DTE[3]: 0000000000000000',
  ]],
  [25, (n) => {
    const out: string[] = [];
    for (let i = 0; i < 5; i++) {
      const iova = (n() * 4096).toString(16);
      out.push(
        'arm-smmu-v3 arm-smmu-v3.0.auto: event 0x10 received:',
        'arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000010000000010',
        'arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000020000000000',
        `arm-smmu-v3 arm-smmu-v3.0.auto: \t0x${iova.padStart(16, '0')}`,
        'arm-smmu-v3 arm-smmu-v3.0.auto: \t0x0000000000000000',
        `arm-smmu-v3 arm-smmu-v3.0.auto: event: F_TRANSLATION client: 0000:01:00.0 sid: 0x100 ssid: 0x0 iova: 0x${iova} ipa: 0x0`,
        'arm-smmu-v3 arm-smmu-v3.0.auto: unpriv data write s1 "Input address caused fault" stag: 0x0',
      );
    }
    return out;
  }],
  [5, () => [
    'DMAR: VT-d detected Invalidation Time-out Error: SID 6a08',
    'DMAR: QI HEAD: Device-TLB Invalidation qw0 = 0x6a080000000003, qw1 = 0x7ffffffffffff001',
    'DMAR: QI PRIOR: Invalidation Wait qw0 = 0x200000025, qw1 = 0x10d5ff000',
    'DMAR: Invalidation Time-out Error (ITE) cleared',
  ]],
  [4, () => ['IOMMU: dmar15: Page request in Privilege Mode', 'dmar15: Invalid page request: 2000026a100101 ffffb167']],
  [1, () => ['DMAR: dmar0: reg_base_addr fed90000 ver 1:0 cap 1c0000c40660462 ecap 19e2ff0505e']],
];
const TOTAL_WEIGHT = BURSTS.reduce((s, [w]) => s + w, 0);

function burst(next: () => number): string[] {
  let pick = next() % TOTAL_WEIGHT;
  for (const [w, lines] of BURSTS) {
    if (pick < w) return lines(next);
    pick -= w;
  }
  return [];
}

/** Writes about `bytes` of log to `file`; the same seed gives the same file. */
function generate(file: string, bytes: number): void {
  const next = rng(7);
  const fd = openSync(file, 'w');
  let written = 0;
  let t = 0;
  let chunk: string[] = [];
  let chunkSize = 0;
  const stamp = () => `[${(t += 0.000731).toFixed(6).padStart(12)}] `;
  while (written < bytes) {
    const lines = (next() % 2000 === 0 ? burst(next) : [NOISE[next() % NOISE.length]!.replace(/%d/g, () => String(next() % 10000))]).map((l) => stamp() + l + '\n');
    for (const l of lines) {
      chunk.push(l);
      chunkSize += l.length;
    }
    if (chunkSize > 1 << 20) {
      writeSync(fd, chunk.join(''));
      written += chunkSize;
      chunk = [];
      chunkSize = 0;
    }
  }
  writeSync(fd, chunk.join(''));
  closeSync(fd);
}

// GNU grep stops at the first match when its output is /dev/null, so its output goes to a pipe.
function seconds(cmd: string, args: string[], out: 'ignore' | 'pipe' = 'ignore'): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { stdio: ['ignore', out, 'inherit'], maxBuffer: 1 << 20 });
  if (r.status !== 0 && !(cmd === 'grep' && r.status === 1)) throw new Error(`${cmd} exited with ${r.status}`);
  return Number(process.hrtime.bigint() - t) / 1e9;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

/** Peak RSS in MB of the CLI decoding `file` (the same bundle, run through a wrapper that reports maxRSS). */
function peakRssMb(file: string): number {
  const wrapper =
    `process.argv = [process.argv[0], ${JSON.stringify(cli)}, 'decode-log', '--format', 'json', ${JSON.stringify(file)}];` +
    `process.on('exit', () => require('node:fs').writeSync(2, 'maxrss ' + process.resourceUsage().maxRSS + '\\n'));` +
    `require(${JSON.stringify(cli)});`;
  const r = spawnSync(process.execPath, ['-e', wrapper], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
  const m = /maxrss (\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no maxrss from the wrapper: ${r.stderr}`);
  return Number(m[1]) / 1024;
}

const dir = mkdtempSync(join(tmpdir(), 'iommu-lab-bench-'));
try {
  const big = join(dir, 'kern-1g.log');
  const small = join(dir, 'kern-64m.log');
  generate(big, 1 << 30);
  generate(small, 64 << 20);
  const size = statSync(big).size;

  // Warm the page cache, then alternate the two commands so that both see the same machine state.
  seconds('grep', ['-c', 'DMAR', big], 'pipe');
  const grep: number[] = [];
  const decode: number[] = [];
  for (let i = 0; i < 3; i++) {
    grep.push(seconds('grep', ['-c', 'DMAR', big], 'pipe'));
    decode.push(seconds(process.execPath, [cli, 'decode-log', big, '--format', 'json']));
  }
  report('decode-log.json_1GB', median(decode), 's', median(grep));
  report('decode-log.throughput_1GB', size / 2 ** 20 / median(decode), 'MiB/s', size / 2 ** 20 / median(grep));
  report('decode-log.peak_rss_1GB', peakRssMb(big), 'MB', peakRssMb(small));
} finally {
  rmSync(dir, { recursive: true, force: true });
}
