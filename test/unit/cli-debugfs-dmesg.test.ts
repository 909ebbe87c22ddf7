import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { kernelDebugfsView, renderDebugfs } from '../../src/core/driver/debugfs';
import { debugfsKernel, faultDump } from '../support/debugfs-kernel';

/**
 * `--dmesg` on import-debugfs and walk: the kernel log of the same boot gives the PASID directory that
 * debugfs does not print. The dump and the log are written as files, and the built CLI reads them.
 */

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');
const realVm = join(root, 'test/fixtures/real-vm/custom612-legacy');

function run(args: string[], input = '') {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('cli: debugfs with the kernel log (--dmesg)', () => {
  let dir: string;
  let dump: string;
  let dmesg: string;
  let tableAddress: number;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-dmesg-'));
    const k = debugfsKernel({ legacyUnit: false, cachingMode: false, firstStage: false, maps: [{ iovaPage: 0x100, outPage: 5, size: '4K', write: true }], pasids: [5], nested: false, sva: false, identityDevice: false });
    dump = join(dir, 'intel');
    for (const [path, text] of renderDebugfs(kernelDebugfsView(k))) {
      mkdirSync(dirname(join(dump, path)), { recursive: true });
      writeFileSync(join(dump, path), text);
    }
    dmesg = join(dir, 'dmesg.txt');
    writeFileSync(dmesg, faultDump(k, '6a:01.0', 5, 0xdead_0000));
    const dev = k.device('6a:01.0');
    const mem = k.machine.memory;
    tableAddress = (mem.readHi(dev.pasidDir) & 0xf_ffff) * 0x1_0000_0000 + ((mem.readLo(dev.pasidDir) & 0xffff_f000) >>> 0);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('walks through the PASID table where the kernel put it, and says where that came from', () => {
    const withLog = run(['walk', '--debugfs', dump, '--dmesg', dmesg, '--device', '6a:01.0', '--pasid', '5', '--write', '0x100abc']);
    assert.equal(withLog.stderr, '');
    assert.equal(withLog.code, 0);
    assert.match(withLog.stdout, /^Result: 0x100005abc /m);
    assert.match(withLog.stdout, /is from the kernel log \(.*dmesg\.txt:2\); debugfs does not print it/);
    const json = run(['walk', '--debugfs', dump, '--dmesg', dmesg, '--device', '6a:01.0', '--pasid', '5', '--format', 'json', '0x100abc']);
    const steps = (JSON.parse(json.stdout) as { result: { trace?: { structure: string; entryAddress?: string }[] } }).result.trace ?? [];
    const pasidEntry = steps.find((s) => s.structure === 'pasid-entry');
    assert.equal(Number(pasidEntry?.entryAddress), tableAddress + 5 * 64, 'the PASID entry is read from the real table');

    const alone = run(['walk', '--debugfs', dump, '--device', '6a:01.0', '--pasid', '5', '--write', '0x100abc']);
    assert.equal(alone.code, 0);
    assert.match(alone.stdout, /^Note: debugfs does not print the PASID directory/m);
  });

  it('reads a log whose lines end in a lone CR (a serial capture) as decode-log does: the dump after 100 lines is found, on line 1', () => {
    const lines = Array.from({ length: 100 }, (_, i) => `[    ${i}.000000] usb 1-1: new high-speed USB device number ${i} using xhci_hcd`);
    const cr = join(dir, 'serial.log');
    writeFileSync(cr, [...lines, ...readFileSync(dmesg, 'utf8').split('\n').filter((l) => l !== '')].join('\r') + '\r');
    const r = run(['walk', '--debugfs', dump, '--dmesg', cr, '--device', '6a:01.0', '--pasid', '5', '--write', '0x100abc']);
    assert.equal(r.code, 0, r.stderr);
    // Lines end at LF, as grep -n counts them: the whole file is line 1.
    assert.match(r.stdout, /is from the kernel log \(.*serial\.log:1\); debugfs does not print it/);
  });

  it('imports the real 6.12 dump with its dmesg (legacy mode: no PASID directory to take)', () => {
    const r = run(['import-debugfs', join(realVm, 'debugfs-vfio-mapped/intel'), '--dmesg', join(realVm, 'dmesg-after-vfio-faults.txt')]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^dmar0: VT-d 1\.0 at 0xfed90000, legacy mode/m);
  });

  it('names a missing log as an input problem (1) and refuses two readers of stdin (2)', () => {
    const missing = run(['import-debugfs', dump, '--dmesg', join(dir, 'nope.txt')]);
    assert.deepEqual([missing.code, missing.stderr], [1, `iommu-lab: import-debugfs: ${join(dir, 'nope.txt')}: no such file or directory\n`]);
    const both = run(['walk', '--debugfs', '-', '--dmesg', '-', '--device', '6a:01.0', '0x1000']);
    assert.deepEqual([both.code, both.stderr], [2, "iommu-lab: walk: --dmesg - and a dump on stdin cannot both read it (see 'iommu-lab walk --help')\n"]);
  });
});
