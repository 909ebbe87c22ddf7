import * as assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { debugfsFileOrder } from '../../src/readers/debugfs';
import { loadDebugfs } from '../../src/readers/debugfs-import';
import { describeImport, reportText, walkImported } from '../../src/readers/debugfs-report';
import { runCli } from './cli.test';

/**
 * A dump that lacks some of debugfs's files: every unit value it does not hold is marked assumed or unknown,
 * in the JSON and the text, never printed as a fact, and no message blames a file the dump does not have.
 * What each file holds (drivers/iommu/intel/debugfs.c, Linux 6.12): iommu_regset the register base in its
 * title and VER, CAP, ECAP, GSTS and RTADDR (the root table, and the mode in its TTM bits); dmar_translation_struct
 * the root table in its title, the mode in its PASID column (-1 in legacy mode), and that translation is on
 * (else it prints `DMA Remapping is not enabled on dmarN`); a device's domain_translation_struct its PCI
 * segment (`Device %04x:...`); invalidation_queue only the queue. The unit name is in every file but the
 * device files.
 */

const root = join(__dirname, '../../..');
const dumpDir = join(root, 'test/fixtures/workspace/debugfs-dump');

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => (statSync(join(dir, n)).isDirectory() ? filesUnder(join(dir, n)) : [join(dir, n)]));
}
const all = debugfsFileOrder(filesUnder(dumpDir).map((f) => relative(dumpDir, f).split(sep).join('/')));
const REGISTERS = ['regBase', 'version', 'cap', 'ecap', 'features'];
const TABLES = ['mode', 'translationEnabled', 'rootTable'];
const DEBUGFS_FILES = ['iommu_regset', 'dmar_translation_struct', 'invalidation_queue', 'ir_translation_struct'];

const cases: { name: string; files: string[]; assumed: string[]; unknown: string[]; contextUnknown: boolean }[] = [
  { name: 'the whole dump', files: all, assumed: [], unknown: [], contextUnknown: false },
  { name: 'no iommu_regset', files: all.filter((f) => f !== 'iommu_regset'), assumed: REGISTERS, unknown: [], contextUnknown: false },
  // The regset's RTADDR and GSTS still give the root table, the mode and translation; the context entries are not in it.
  { name: 'no dmar_translation_struct', files: all.filter((f) => f !== 'dmar_translation_struct'), assumed: [], unknown: [], contextUnknown: true },
  { name: 'dmar_translation_struct alone', files: ['dmar_translation_struct'], assumed: [...REGISTERS, 'segment'], unknown: [], contextUnknown: false },
  { name: 'a domain_translation_struct alone', files: ['0000:00:02.0/domain_translation_struct'], assumed: ['name', ...REGISTERS], unknown: TABLES, contextUnknown: true },
  { name: 'invalidation_queue alone', files: ['invalidation_queue'], assumed: [...REGISTERS, 'segment'], unknown: TABLES, contextUnknown: true },
];

describe('readers: what a partial debugfs dump does not hold is assumed or unknown, never a fact', () => {
  for (const c of cases) {
    it(`${c.name}: ${c.assumed.length ? 'assumes ' + c.assumed.join(', ') : 'assumes nothing'}; ${c.unknown.length ? c.unknown.join(', ') + ' unknown' : 'nothing unknown'}`, () => {
      const imp = loadDebugfs(c.files.map((f) => ({ path: f, text: readFileSync(join(dumpDir, f), 'utf8') })));
      const report = describeImport(imp);
      const unit = report.units[0]!;
      assert.equal(report.units.length, 1);
      assert.deepEqual(Object.keys(unit.assumed).sort(), [...c.assumed].sort());
      assert.deepEqual(Object.keys(unit.unknown).sort(), [...c.unknown].sort());
      // Unknown values are null, and only they.
      for (const k of TABLES) assert.equal(unit[k as 'mode'] === null, c.unknown.includes(k), k);
      for (const d of report.devices) {
        assert.equal(d.unknown.context !== undefined, c.contextUnknown, d.device);
        if (d.unknown.context) assert.equal(d.context, null);
      }
      // The text: the unit's first line holds only facts; each assumed value is on an "assumed (why)" line.
      const text = reportText(report, 'dump');
      const first = text[0]!;
      const forbidden: Record<string, RegExp> = { regBase: / at 0x/, version: /VT-d/, mode: / mode\b/, translationEnabled: /translation/, rootTable: /root table/ };
      for (const k of [...c.assumed, ...c.unknown]) if (forbidden[k]) assert.doesNotMatch(first, forbidden[k]!, `${k} in the facts: ${first}`);
      const lines = text.slice(1, text.indexOf(''));
      if (c.assumed.includes('cap')) {
        assert.ok(lines.some((l) => /^ {2}assumed \(.+\): .*cap 0x[0-9a-f]+ ecap 0x[0-9a-f]+/.test(l)), lines.join('\n'));
        assert.ok(lines.some((l) => l.startsWith('  assumed features: ')), lines.join('\n'));
      } else {
        assert.ok(lines.includes(`  cap ${unit.cap} ecap ${unit.ecap}`));
      }
      if (c.unknown.length > 0) assert.ok(lines.some((l) => /^ {2}unknown \(.+\): the mode, whether translation is on, the root table$/.test(l)), lines.join('\n'));
      // No warning blames a file the dump does not have; a missing file is said to be missing.
      for (const d of imp.diagnostics) {
        for (const file of DEBUGFS_FILES) {
          if (!d.message.includes(file) || c.files.includes(file)) continue;
          assert.notEqual(d.severity, 'warning', d.message);
          assert.match(d.message, new RegExp(`has no ${file}|has neither (iommu_regset nor )?${file}|nor ${file}`), d.message);
        }
      }
    });
  }

  it('a domain_translation_struct alone, through the CLI: what it holds is a fact, the rest is said to be missing, status 0; walk refuses', () => {
    const file = join(dumpDir, '0000:00:02.0/domain_translation_struct');
    const r = runCli(['import-debugfs', file]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    const lines = r.stdout.split('\n');
    assert.deepEqual(lines.slice(0, 4), [
      'dmar0',
      '  assumed (the dump names no unit): the name dmar0',
      '  assumed (the dump has no iommu_regset for dmar0): VT-d 6.0 at 0xfed90000, cap 0x11ff078c40780e06 ecap 0x3cd9824f050c7',
      '  unknown (the dump has neither iommu_regset nor dmar_translation_struct for dmar0): the mode, whether translation is on, the root table',
    ]);
    assert.ok(lines.includes('0000:00:02.0 (dmar0)'));
    assert.ok(lines.includes('  context entry unknown (the dump has no dmar_translation_struct for dmar0)'));
    assert.ok(lines.includes(`${file}:1: info: the dump has no dmar_translation_struct for dmar0 (its root and context tables): 0000:00:02.0's page tables here are loaded, but no context entry of the dump leads a request to them`), r.stdout);
    assert.doesNotMatch(r.stdout, /no context entry in dmar_translation_struct|legacy mode|translation OFF/);
    const json = JSON.parse(runCli(['import-debugfs', '--format', 'json', file]).stdout);
    assert.deepEqual([json.units[0].mode, json.units[0].translationEnabled, json.units[0].rootTable], [null, null, null]);
    assert.deepEqual(Object.keys(json.units[0].unknown).sort(), ['mode', 'rootTable', 'translationEnabled']);
    assert.deepEqual(Object.keys(json.units[0].assumed).sort(), ['cap', 'ecap', 'features', 'name', 'regBase', 'version']);
    assert.equal(json.devices[0].context, null);
    assert.equal(json.devices[0].unknown.context, 'the dump has no dmar_translation_struct for dmar0');
    const walk = runCli(['walk', '--debugfs', file, '--device', '00:02.0', '0x100000']);
    assert.deepEqual([walk.code, walk.stdout], [1, '']);
    assert.equal(walk.stderr, `iommu-lab: walk: ${file}: 0000:00:02.0 cannot be walked: the dump has neither iommu_regset nor dmar_translation_struct for dmar0 (a walk starts at its root table)\n`);
  });

  it('a library walk through the whole dump still works, and through one lacking the tables says why not', () => {
    const inputs = (files: string[]) => files.map((f) => ({ path: f, text: readFileSync(join(dumpDir, f), 'utf8') }));
    const ok = walkImported(loadDebugfs(inputs(all)), { device: '0000:6a:01.0', pasid: 5, write: true, address: '0x40000234' });
    assert.ok(ok.ok && ok.result.ok && ok.result.output === '0x123400234');
    const none = walkImported(loadDebugfs(inputs(['invalidation_queue', '0000:00:02.0/domain_translation_struct'])), { device: '00:02.0', address: '0x100000' });
    assert.ok(!none.ok && /cannot be walked: the dump has neither iommu_regset nor dmar_translation_struct for dmar0/.test(none.error), JSON.stringify(none));
  });
});
