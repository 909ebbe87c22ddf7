import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

// How import-debugfs and walk name the place of a problem: FILE:LINE for a line, FILE alone for the whole
// input (no line 0), and stdin as every command calls it, `<stdin>`.

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');
const legacy = join(root, 'test/fixtures/debugfs/legacy');
const file = (name: string) => readFileSync(join(legacy, name), 'utf8');

function run(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('cli: where import-debugfs and walk say a problem is', () => {
  const dump = file('iommu_regset') + file('dmar_translation_struct');
  const badLine = dump.split('\n').length;
  const withJunk = dump + 'garbage line here\n';

  it('names a line of stdin <stdin>:LINE, in the report and on stderr', () => {
    const imp = run(['import-debugfs', '-'], withJunk);
    assert.equal(imp.code, 1);
    assert.ok(imp.stdout.includes(`\n<stdin>:${badLine}: warning: not part of a VT-d debugfs table: 'garbage line here'\n`), imp.stdout);
    const walk = run(['walk', '--debugfs', '-', '--device', '00:02.0', '0x1000'], withJunk);
    assert.ok(walk.stderr.startsWith(`<stdin>:${badLine}: warning: not part of a VT-d debugfs table: 'garbage line here'\n`), walk.stderr);
    for (const out of [imp.stdout, imp.stderr, walk.stdout, walk.stderr]) assert.doesNotMatch(out, /<input>|:0:/);
  });

  it('gives a problem of the whole input no line number', () => {
    // Without iommu_regset a unit's registers are assumed, said where the dump names the unit: dmar0's title,
    // dmar1's "DMA Remapping is not enabled" line. "10 more problems" is about the whole input.
    const junk = Array.from({ length: 210 }, (_, i) => `junk ${i}`).join('\n');
    const r = run(['import-debugfs', '-'], file('dmar_translation_struct') + junk + '\n');
    const lines = r.stdout.split('\n');
    assert.ok(lines.includes('<stdin>: info: 10 more problems not listed'), r.stdout);
    const off = file('dmar_translation_struct').split('\n').findIndex((l) => l.startsWith('DMA Remapping is not enabled on dmar1')) + 1;
    assert.ok(off > 0);
    assert.ok(lines.includes(`<stdin>:${off}: info: the dump has no iommu_regset for dmar1: its CAP/ECAP are assumed, those of a scalable-mode capable unit with 4- and 5-level tables, 2M/1G pages and 20-bit PASIDs`), r.stdout);
    assert.ok(lines.some((l) => /^<stdin>:1: info: the dump has no iommu_regset for dmar0: /.test(l)), r.stdout);
    assert.doesNotMatch(r.stdout, /<input>|:0:/);
  });

  it('names a file given by name with its path, and a whole-dump problem with what was named', () => {
    const r = run(['import-debugfs', join(legacy, 'dmar_translation_struct')]);
    assert.ok(r.stdout.includes(`\n${join(legacy, 'dmar_translation_struct')}:1: info: the dump has no iommu_regset for dmar0: `), r.stdout);
    assert.doesNotMatch(r.stdout, /<input>|:0:/);
  });
});
