import * as assert from 'node:assert/strict';
import { decodeLogText } from '../../src/readers/log-decoder';
import { runCli } from './cli.test';

describe('iommu-lab vm-flow: the seed flows as examples from the command line', () => {
  it('lists the flows, one per seed and migration', () => {
    const r = runCli(['vm-flow', 'list']);
    assert.equal(r.code, 0);
    assert.deepEqual(r.stdout.trimEnd().split('\n').map((l) => l.split('\t')[0]), ['000', '001', '002', '003', '004', 'migrate']);
  });

  it("runs seed 000 and prints its steps in the seed's order: vcmd allocation, bind_gpasid, the device model's search, the PRQ lookups", () => {
    const r = runCli(['vm-flow', '000']);
    assert.equal(r.code, 0, r.stderr);
    const order = ['virtual-command: ALLOC_PASID', 'bind-gpasid:', 'program-work-queue:', 'host-driver G-to-H search (work queue programming)', 'host-driver H-to-G lookup (page request)', 'inject-page-request:', 'vmm G-to-H lookup (page response)', 'page-response:'];
    let at = -1;
    for (const phrase of order) {
      const i = r.stdout.indexOf(phrase, at + 1);
      assert.ok(i > at, `'${phrase}' after the previous step`);
      at = i;
    }
    assert.match(r.stdout, /the same DMA retried: 0x[0-9a-f]+ \(GPA 0x[0-9a-f]+\), PASID 3 on the wire/);
    assert.match(r.stdout, /findings: none\n$/);
  });

  it('--qemu-trace prints QEMU vtd_* lines the QEMU trace reader reads, and --format json one object', () => {
    const t = runCli(['vm-flow', '002', '--qemu-trace']);
    assert.equal(t.code, 0, t.stderr);
    const { events } = decodeLogText(t.stdout);
    assert.ok(events.length > 5);
    assert.ok(events.every((e) => e.format === 'qemu-trace'));
    const j = runCli(['vm-flow', 'migrate', '--format', 'json']);
    assert.equal(j.code, 0, j.stderr);
    const run = JSON.parse(j.stdout) as { id: string; outcomes: { what: string; value: string }[] };
    assert.equal(run.id, 'migrate');
    assert.equal(run.outcomes.find((o) => o.what === 'host PASIDs re-allocated')!.value, '2 -> 3');
  });

  it('an unknown flow is a usage error with the choices (status 2)', () => {
    const r = runCli(['vm-flow', '005']);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, "iommu-lab: vm-flow: no flow '005': choose one of 000, 001, 002, 003, 004, migrate (or 'list') (see 'iommu-lab vm-flow --help')\n");
  });
});
