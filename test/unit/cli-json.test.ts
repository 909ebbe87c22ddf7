import * as assert from 'node:assert/strict';
import { join } from 'node:path';
import { runCli } from './cli.test';

/**
 * The JSON of walk and import-debugfs crosses a process boundary, so it follows the project's rule for it:
 * every address and 64-bit value is a `0x` hex string, one field per value (no number beside it), as
 * decode-log's events have it. The expected values come from the workspace dump's files: dmar_translation_struct
 * gives 6a:01.0 PASID 5 a second-level table at 0x10041000, and 0000:6a:01.0/5/domain_translation_struct has
 * its PTE for IOVA_PFN 0x40000, 0x0000000123400003 (R, W; page 0x123400000).
 */

const root = join(__dirname, '../../..');
const dump = join(root, 'test/fixtures/workspace/debugfs-dump');
const realVm = join(root, 'test/fixtures/real-vm/custom612-legacy');

/** Keys whose values are addresses or 64-bit quantities wherever they occur. */
const HEX_KEYS = new Set(['address', 'output', 'table', 'entryAddress', 'root', 'rootTable', 'regBase', 'cap', 'ecap', 'base', 'iova', 'size', 'mappedBytes', 'ADDR']);
/** Keys whose values are arrays of 64-bit words. */
const WORD_KEYS = new Set(['raw', 'cached', 'memory']);
const HEX = /^0x[0-9a-f]+$/;

/** Every problem with the rule in `value`, by JSON path. */
function violations(value: unknown, path = '$', out: string[] = []): string[] {
  if (typeof value === 'number' && !(Number.isInteger(value) && Math.abs(value) < 2 ** 32)) out.push(`${path}: ${value} is a number past 32 bits`);
  if (Array.isArray(value)) value.forEach((v, i) => violations(v, `${path}[${i}]`, out));
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    if ('output' in o && 'address' in o) out.push(`${path}: both output and address (one field per value)`);
    for (const [k, v] of Object.entries(o)) {
      const at = `${path}.${k}`;
      if ((HEX_KEYS.has(k) || /PTR$/.test(k)) && v !== null && !(typeof v === 'string' && HEX.test(v))) out.push(`${at}: ${JSON.stringify(v)} is not a 0x hex string`);
      if (WORD_KEYS.has(k) && !(Array.isArray(v) && v.every((w) => typeof w === 'string' && /^0x[0-9a-f]{16}$/.test(w)))) out.push(`${at}: ${JSON.stringify(v)} are not 0x + 16-digit words`);
      violations(v, at, out);
    }
  }
  return out;
}

function json(args: string[]): unknown {
  const r = runCli(args);
  assert.ok(r.code === 0 || r.code === 1, `${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

describe('cli: the JSON of walk and import-debugfs', () => {
  const walk = (...args: string[]) => json(['walk', '--format', 'json', '--debugfs', dump, ...args]) as Record<string, Record<string, unknown>>;

  it('walk: the request address and the result are hex strings, small or large, with no number twin', () => {
    const ok = walk('--device', '0000:6a:01.0', '--pasid', '5', '--write', '0x40000234');
    assert.deepEqual(ok.request, { pasid: 5, address: '0x40000234', access: 'write', priv: false });
    assert.equal(ok.result!.ok, true);
    assert.equal(ok.result!.output, '0x123400234');
    assert.equal('address' in ok.result!, false);
    // The second-level PTE the dump holds for IOVA_PFN 0x40000, as the walk's last step read it.
    const trace = ok.result!.trace as { structure: string; raw: string[] }[];
    assert.deepEqual(trace.at(-1)!.raw, ['0x0000000123400003']);
    // A decimal and a 64-bit address (past 2^53: no exact number) are the same kind of string.
    assert.equal(walk('--device', '0000:6a:01.0', '--pasid', '5', String(0x40000234)).request!.address, '0x40000234');
    const top = walk('--device', '00:02.0', '0xfffffffffffff000');
    assert.equal(top.request!.address, '0xfffffffffffff000');
    assert.equal(top.result!.ok, false);
    for (const w of [ok, top]) assert.deepEqual(violations(w), []);
  });

  it('import-debugfs: raw words, mapped bytes and every address are hex strings (the workspace dump and the real 6.12 dumps)', () => {
    const workspace = json(['import-debugfs', '--format', 'json', dump]) as { devices: { device: string; context: { raw: string[] } }[]; summary: { mappedBytes: string } };
    assert.deepEqual(violations(workspace), []);
    // dmar_translation_struct's context entry of 00:02.0: 0x0000000000000000:0x0000000010014401 (hi:lo).
    assert.deepEqual(workspace.devices.find((d) => d.device === '0000:00:02.0')!.context.raw.slice(0, 2), ['0x0000000010014401', '0x0000000000000000']);
    // 64 KiB + 4 KiB + 4 KiB, as the domain files map them.
    assert.equal(workspace.summary.mappedBytes, '0x12000');
    for (const stage of ['debugfs-boot', 'debugfs-vfio-mapped']) {
      assert.deepEqual(violations(json(['import-debugfs', '--format', 'json', join(realVm, stage, 'intel')])), [], stage);
    }
  });

  it("walk --help names every field of the JSON it prints", () => {
    const help = runCli(['walk', '--help']).stdout;
    const ok = walk('--device', '0000:6a:01.0', '--pasid', '5', '--write', '0x40000234');
    const fault = walk('--device', '00:02.0', '0xfffffffffffff000');
    const names = new Set([...Object.keys(ok), ...Object.keys(ok.request!), ...Object.keys(ok.result!), ...Object.keys(fault.result!)]);
    for (const step of [...(ok.result!.trace as object[]), ...(fault.result!.trace as object[])]) for (const k of Object.keys(step)) names.add(k);
    for (const name of names) assert.match(help, new RegExp(`\\b${name}\\b`), name);
    assert.match(help, /0x hex string/);
  });
});
