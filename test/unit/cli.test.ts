import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');
const fixtures = join(root, 'test/fixtures/workspace');

/** Runs the built CLI as a real process, exactly as a user would through the `iommu-lab` bin link. */
export function runCli(args: string[], input?: string): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('cli shell', () => {
  it('is an executable script with a node shebang', () => {
    assert.ok(readFileSync(cli, 'utf8').startsWith('#!/usr/bin/env node\n'));
    assert.ok((statSync(cli).mode & 0o111) !== 0);
  });

  it('--help lists every subcommand with a one-line summary', () => {
    const r = runCli(['--help']);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^Usage: iommu-lab <command>/);
    const commands = r.stdout.split('Commands:\n')[1]!.split('\n\n')[0]!.split('\n');
    assert.ok(commands.length >= 1);
    for (const line of commands) assert.match(line, /^ {2}[a-z-]+ {2,}\S.+$/);
    assert.ok(commands.some((l) => l.trimStart().startsWith('check ')));
  });

  it('--version prints the package version', () => {
    const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
    assert.deepEqual(runCli(['--version']), { code: 0, stdout: `${pkg.version}\n`, stderr: '' });
  });

  it('rejects an unknown command with a one-line error and exit code 2', () => {
    const r = runCli(['frobnicate']);
    assert.equal(r.code, 2);
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, "iommu-lab: unknown command 'frobnicate' (see 'iommu-lab --help')\n");
  });

  it('rejects an unknown option and a bad option value with one line and exit code 2', () => {
    const a = runCli(['check', '--frob', 'x.iommu']);
    assert.equal(a.code, 2);
    assert.equal(a.stderr.split('\n').length, 2, a.stderr);
    assert.equal(a.stderr, "iommu-lab: check: unknown option '--frob' (see 'iommu-lab check --help')\n");
    const b = runCli(['check', '--format', 'xml', 'x.iommu']);
    assert.equal(b.code, 2);
    assert.equal(b.stderr, "iommu-lab: check: --format must be text or json, not 'xml' (see 'iommu-lab check --help')\n");
    const c = runCli(['--bogus']);
    assert.equal(c.code, 2);
    assert.equal(c.stderr, "iommu-lab: unknown option '--bogus' (see 'iommu-lab --help')\n");
  });

  it('with no arguments prints usage to stderr and exits 2', () => {
    const r = runCli([]);
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^Usage: iommu-lab/);
  });

  it('check reports lexical errors gcc style and exits 1', () => {
    const file = join(fixtures, 'lexical-error.iommu');
    const r = runCli(['check', file]);
    assert.equal(r.code, 1);
    assert.deepEqual(r.stdout.trimEnd().split('\n'), [
      `${file}:3:8: error: device 0x20 is out of range (00-1f) in PCI address '00:20.0' [bad-pci-address]`,
      `${file}:4:13: error: malformed hexadecimal number '0xZZ' [bad-number]`,
    ]);
  });

  it('check passes a clean file, and reports in JSON on request', () => {
    assert.deepEqual(runCli(['check', join(fixtures, 'valid.iommu')]), { code: 0, stdout: '', stderr: '' });
    const r = runCli(['check', '--format', 'json', join(fixtures, 'lexical-error.iommu')]);
    const parsed = JSON.parse(r.stdout);
    assert.equal(parsed.diagnostics.length, 2);
    assert.deepEqual(parsed.diagnostics[0], {
      line: 3, column: 8, endLine: 3, endColumn: 15, severity: 'error', code: 'bad-pci-address',
      message: "device 0x20 is out of range (00-1f) in PCI address '00:20.0'",
    });
  });

  it('check on a missing file is a problem with the input (1), naming the file, and the other files are still checked', () => {
    const r = runCli(['check', '/nonexistent/x.iommu', join(fixtures, 'lexical-error.iommu')]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr, 'iommu-lab: check: /nonexistent/x.iommu: no such file or directory\n');
    assert.equal(r.stdout.trimEnd().split('\n').length, 2);
  });

  it('help COMMAND and COMMAND --help print the command help', () => {
    const a = runCli(['help', 'check']);
    const b = runCli(['check', '--help']);
    assert.equal(a.code, 0);
    assert.equal(a.stdout, b.stdout);
    assert.match(a.stdout, /^Usage: iommu-lab check \[--format text\|json\] FILE\.\.\./);
  });

  it('every command documents the same exit statuses in its --help, and the main help sums them up', () => {
    const main = runCli(['--help']).stdout;
    assert.match(main, /^Exit status: 0 success, 1 a problem with the input, 2 bad usage, 70 internal error/m);
    const names = main.split('Commands:\n')[1]!.split('\n\n')[0]!.split('\n').map((l) => l.trim().split(/\s+/)[0]!);
    assert.deepEqual(names, ['check', 'decode-log', 'import-debugfs', 'walk', 'lspci', 'vm-flow']);
    for (const name of names) {
      const help = runCli([name, '--help']).stdout;
      const status = help.split('\nExit status:\n')[1];
      assert.ok(status, `${name} --help has no exit status`);
      const codes = status.split('\n').filter((l) => /^ {2}\d/.test(l)).map((l) => l.trim().split(/\s+/)[0]);
      assert.deepEqual(codes, ['0', '1', '2', '70'], name);
      assert.match(status, /^ {2}2 {3}bad usage: /m, name);
      assert.match(status, /^ {2}70 {2}internal error/m, name);
    }
  });
});
