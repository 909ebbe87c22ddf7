import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { commands } from '../../src/cli/commands';
import { type CliIo, runCli, type Subcommand } from '../../src/cli/framework';

/**
 * Every command against what users hand it by mistake: nothing, a missing file, a directory, an empty file,
 * binary data, one line, a terminal on stdin, unknown options. The rule (README, "The command line"): bad usage
 * is one line and status 2; a problem with the input is one line naming it and status 1; never a stack trace.
 * The terminal comes from util-linux `script` (Debian: bsdutils).
 */

const root = join(__dirname, '../../..');
const cli = join(root, 'dist/cli.js');
const logs = join(root, 'test/fixtures/logs');

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], input: string | Buffer = ''): Run {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', input, timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/**
 * Runs the CLI with a terminal for stdin and stdout (util-linux `script`); returns the exit status and what it
 * printed. Without `script` the test fails saying so.
 */
function runOnTerminal(args: string[]): { code: number | null; output: string } {
  const command = [process.execPath, cli, ...args].map((a) => `'${a}'`).join(' ');
  const r = spawnSync('script', ['-qec', command, '/dev/null'], { encoding: 'utf8', input: '', timeout: 30_000 });
  if (r.error) assert.fail(`this test needs util-linux \`script\` (Debian: bsdutils) to give the CLI a terminal: ${r.error.message}`);
  return { code: r.status, output: r.stdout.replace(/\r\n/g, '\n') };
}

const p = (command: string, input: string, message: string) => `iommu-lab: ${command}: ${input}: ${message}\n`;

describe('cli: bad input', () => {
  let dir: string;
  const f: Record<string, string> = {};

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'iommu-lab-bad-input-'));
    const file = (name: string, content: string | Buffer) => {
      writeFileSync((f[name] = join(dir, name)), content);
    };
    f.missing = join(dir, 'missing.log');
    mkdirSync((f.dir = join(dir, 'a-directory')));
    file('empty', '');
    // Random bytes from a fixed seed: about one byte in ten is a control character.
    let seed = 12345;
    file('random', Buffer.from(Array.from({ length: 4096 }, () => (seed = (seed * 1103515245 + 12345) % 2147483648) >>> 23)));
    file('gzip', gzipSync(readFileSync(join(logs, 'vtd-6x.log'))));
    file('nul', Buffer.from('DMAR:\0\0\0\0 core\0\0\0\0\n'));
    file('utf16', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(readFileSync(join(logs, 'vtd-6x.log'), 'utf8'), 'utf16le')]));
    file('one-line', 'hello world\n');
    // The first DMA fault of the 6.x fixture, alone.
    file('one-fault', readFileSync(join(logs, 'vtd-6x.log'), 'utf8').split('\n').find((l) => l.includes('DMAR: [DMA Read NO_PASID]'))! + '\n');
    file('one-device', '00:02.0 VGA compatible controller: Intel Corporation Alder Lake-P GT2 [Iris Xe Graphics] (rev 0c)\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const notText = (command: string, name: string) => (r: Run) => {
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, new RegExp(`^iommu-lab: ${command}: ${name.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: not a text file \\(.+\\)\\n$`));
  };

  for (const command of ['decode-log', 'lspci'] as const) {
    describe(command, () => {
      it('missing file, directory, empty file: one line naming it, status 1', () => {
        assert.deepEqual(run([command, f.missing!]), { code: 1, stdout: '', stderr: p(command, f.missing!, 'no such file or directory') });
        assert.deepEqual(run([command, f.dir!]), { code: 1, stdout: '', stderr: p(command, f.dir!, 'is a directory') });
        const empty = run([command, f.empty!]);
        assert.deepEqual([empty.code, empty.stderr], [1, p(command, f.empty!, 'empty (0 bytes)')]);
        const stdin = run([command], '');
        assert.deepEqual([stdin.code, stdin.stderr], [1, p(command, '<stdin>', 'empty (0 bytes)')]);
      });

      it('random bytes, a file with NULs, a gzip, UTF-16: "not a text file", with the reason, status 1, nothing on stdout', () => {
        for (const name of ['random', 'nul', 'gzip', 'utf16']) notText(command, f[name]!)(run([command, f[name]!]));
        assert.equal(run([command, f.gzip!]).stderr, p(command, f.gzip!, 'not a text file (gzip-compressed; decompress it first, with zcat)'));
        assert.equal(run([command, f.utf16!]).stderr, p(command, f.utf16!, 'not a text file (UTF-16 text; convert it first, with iconv -f UTF-16 -t UTF-8)'));
        // 4 + 4 NULs in 19 bytes.
        assert.equal(run([command, f.nul!]).stderr, p(command, f.nul!, 'not a text file (8 of its first 19 bytes are control characters, the first at offset 5)'));
        notText(command, '<stdin>')(run([command, '-'], readFileSync(f.gzip!)));
      });

      it('a terminal on stdin with no FILE is bad usage, not a wait for input nobody types', () => {
        const r = runOnTerminal([command]);
        assert.equal(r.code, 2);
        assert.match(r.output, new RegExp(`^iommu-lab: ${command}: no input: stdin is a terminal; name a FILE, pipe .+ in, or give '-' to read the terminal \\(see 'iommu-lab ${command} --help'\\)\\n$`));
      });

      it('unknown options, extra arguments: bad usage, status 2, in lower case like every other message', () => {
        assert.deepEqual(run([command, '--frob']), { code: 2, stdout: '', stderr: `iommu-lab: ${command}: unknown option '--frob' (see 'iommu-lab ${command} --help')\n` });
        assert.deepEqual(run([command, '-x']), { code: 2, stdout: '', stderr: `iommu-lab: ${command}: unknown option '-x' (see 'iommu-lab ${command} --help')\n` });
        assert.deepEqual(run([command, '--format']), { code: 2, stdout: '', stderr: `iommu-lab: ${command}: option '--format' needs a value (see 'iommu-lab ${command} --help')\n` });
        const extra = run([command, 'a', 'b']);
        assert.equal(extra.code, 2);
        assert.equal(extra.stderr, `iommu-lab: ${command}: unexpected argument 'b' (usage: iommu-lab ${command} [--format text|json] [FILE|-])\n`);
      });
    });
  }

  it('decode-log: one line that is not an IOMMU message says so, in the singular; one fault line decodes', () => {
    const none = run(['decode-log', f['one-line']!]);
    assert.deepEqual(none, { code: 1, stdout: '1 line: 0 events, 1 line not recognised.\n', stderr: p('decode-log', f['one-line']!, 'no IOMMU lines found in 1 line') });
    const fault = run(['decode-log', f['one-fault']!]);
    assert.equal(fault.code, 0, fault.stderr);
    assert.equal(fault.stderr, '');
    assert.match(fault.stdout, /^1 line: 1 event, 0 lines not recognised\.$/m);
  });

  it('lspci: a line that is no device header, and plain `lspci` output without capabilities, say what they are', () => {
    assert.deepEqual(run(['lspci', f['one-line']!]), {
      code: 1,
      stdout: '0 devices: 0 with ATS, 0 with PRI, 0 with PASID.\n',
      stderr: p('lspci', f['one-line']!, "no PCI devices found in 1 line (expected the output of 'lspci -vvv')"),
    });
    assert.deepEqual(run(['lspci', f['one-device']!]), {
      code: 1,
      stdout: '1 device: 0 with ATS, 0 with PRI, 0 with PASID; 1 with none of these (not listed).\n',
      stderr: p('lspci', f['one-device']!, "1 device but no 'Capabilities:' line: this is plain 'lspci' output; run 'sudo lspci -vvv'"),
    });
  });

  describe('check', () => {
    it('no argument is bad usage; a missing file, a directory, an empty or a binary file are reported and the rest still checked', () => {
      assert.deepEqual(run(['check']), { code: 2, stdout: '', stderr: 'iommu-lab: check: missing argument (usage: iommu-lab check [--format text|json] FILE...)\n' });
      const valid = join(root, 'test/fixtures/workspace/valid.iommu');
      for (const [name, message] of [
        ['missing', 'no such file or directory'],
        ['dir', 'is a directory'],
        ['empty', 'empty (0 bytes)'],
      ] as const) {
        assert.deepEqual(run(['check', f[name]!, valid]), { code: 1, stdout: '', stderr: p('check', f[name]!, message) }, name);
      }
      for (const name of ['random', 'nul', 'gzip', 'utf16']) notText('check', f[name]!)(run(['check', f[name]!]));
    });

    it('reads stdin for -, and a one-line file is checked like any other', () => {
      assert.deepEqual(run(['check', '-'], 'device 00:20.0\n'), {
        code: 1,
        stdout: "<stdin>:1:8: error: device 0x20 is out of range (00-1f) in PCI address '00:20.0' [bad-pci-address]\n",
        stderr: '',
      });
      const one = join(dir, 'one.iommu');
      writeFileSync(one, readFileSync(join(root, 'test/fixtures/workspace/valid.iommu'), 'utf8').split('\n')[0] + '\n');
      assert.deepEqual(run(['check', one]), { code: 0, stdout: '', stderr: '' });
    });
  });

  for (const command of ['import-debugfs', 'walk'] as const) {
    const args = (dump: string) => (command === 'walk' ? ['walk', '--debugfs', dump, '--device', '00:02.0', '0x1000'] : ['import-debugfs', dump]);
    describe(command, () => {
      it('a missing dump, an empty directory, an empty file, stdin with nothing: one line naming it, status 1', () => {
        assert.deepEqual(run(args(f.missing!)), { code: 1, stdout: '', stderr: p(command, f.missing!, 'no such file or directory') });
        assert.deepEqual(run(args(f.dir!)), {
          code: 1,
          stdout: '',
          stderr: p(command, f.dir!, 'none of the VT-d debugfs files in this directory (0 files; expected iommu_regset, dmar_translation_struct, ...)'),
        });
        assert.deepEqual(run(args(f.empty!)), { code: 1, stdout: '', stderr: p(command, f.empty!, 'empty (0 bytes)') });
        assert.deepEqual(run(args('-'), ''), { code: 1, stdout: '', stderr: p(command, '<stdin>', 'empty (0 bytes)') });
      });

      it('binary data is "not a text file"; a text file without any VT-d table says how many lines it read and the first it did not understand', () => {
        for (const name of ['random', 'nul', 'gzip', 'utf16']) notText(command, f[name]!)(run(args(f[name]!)));
        const r = run(args(f['one-line']!));
        assert.equal(r.code, 1);
        assert.equal(r.stdout, '');
        assert.match(r.stderr, new RegExp(`^iommu-lab: ${command}: ${f['one-line']!}: no VT-d debugfs tables found in 1 line \\(the first, line 1: .*'hello world'.*\\)\\n$`));
      });
    });
  }

  it('import-debugfs: with no argument, or an unknown option, bad usage', () => {
    assert.deepEqual(run(['import-debugfs']), { code: 2, stdout: '', stderr: 'iommu-lab: import-debugfs: missing argument (usage: iommu-lab import-debugfs [--dmesg FILE] [--format text|json] DIR|FILE...)\n' });
    assert.equal(run(['import-debugfs', '--frob', f.empty!]).stderr, "iommu-lab: import-debugfs: unknown option '--frob' (see 'iommu-lab import-debugfs --help')\n");
  });

  it('walk: a malformed request is bad usage before any dump is read; a device the dump does not hold is the dump\'s problem', () => {
    // The dump does not exist: the request is still checked first.
    assert.deepEqual(run(['walk', '--debugfs', f.missing!, '--device', 'zz', '0x1000']), { code: 2, stdout: '', stderr: "iommu-lab: walk: --device 'zz' is not a PCI address: SSSS:BB:DD.F or BB:DD.F (see 'iommu-lab walk --help')\n" });
    assert.deepEqual(run(['walk', '--debugfs', f.missing!, '--device', '00:02.0', '0xzz']), { code: 2, stdout: '', stderr: "iommu-lab: walk: '0xzz' is not an address: hex with 0x, or decimal, up to 64 bits (see 'iommu-lab walk --help')\n" });
    assert.deepEqual(run(['walk', '--device', '00:02.0', '0x1000']), { code: 2, stdout: '', stderr: "iommu-lab: walk: --debugfs DIR|FILE is required (see 'iommu-lab walk --help')\n" });
    assert.deepEqual(run(['walk', '--debugfs', f.missing!, '0x1000']), { code: 2, stdout: '', stderr: "iommu-lab: walk: --device SSSS:BB:DD.F is required (see 'iommu-lab walk --help')\n" });
    assert.deepEqual(run(['walk', '--debugfs']), { code: 2, stdout: '', stderr: "iommu-lab: walk: option '--debugfs' needs a value (see 'iommu-lab walk --help')\n" });
    assert.deepEqual(run(['walk', '--debugfs', f.missing!, '--device', '00:02.0', '--write', '--exec', '0x0']).code, 2);
    // The workspace dump holds 00:02.0 and 6a:01.0 (its per-device folders), not 00:03.0.
    const dump = join(root, 'test/fixtures/workspace/debugfs-dump');
    assert.deepEqual(run(['walk', '--debugfs', dump, '--device', '00:03.0', '0x1000']), {
      code: 1,
      stdout: '',
      stderr: p('walk', dump, '0000:00:03.0 is not in the dump (devices: 0000:00:02.0, 0000:6a:01.0)'),
    });
  });

  it('the top level: no command, an unknown command or option, help for an unknown command: status 2', () => {
    const none = run([]);
    assert.equal(none.code, 2);
    assert.match(none.stderr, /^Usage: iommu-lab <command>/);
    assert.deepEqual(run(['frob']), { code: 2, stdout: '', stderr: "iommu-lab: unknown command 'frob' (see 'iommu-lab --help')\n" });
    assert.deepEqual(run(['decode']), { code: 2, stdout: '', stderr: "iommu-lab: unknown command 'decode'; did you mean 'decode-log'? (see 'iommu-lab --help')\n" });
    assert.deepEqual(run(['help', 'frob']), { code: 2, stdout: '', stderr: "iommu-lab: unknown command 'frob' (see 'iommu-lab --help')\n" });
    assert.deepEqual(run(['-x']), { code: 2, stdout: '', stderr: "iommu-lab: unknown option '-x' (see 'iommu-lab --help')\n" });
    // --help, --version and help COMMAND take nothing more (README: an extra argument is status 2).
    assert.deepEqual(run(['--version', 'extra']), { code: 2, stdout: '', stderr: "iommu-lab: unexpected argument 'extra' (usage: iommu-lab --version)\n" });
    assert.deepEqual(run(['-V', 'extra']), { code: 2, stdout: '', stderr: "iommu-lab: unexpected argument 'extra' (usage: iommu-lab -V)\n" });
    assert.deepEqual(run(['--help', 'extra']), { code: 2, stdout: '', stderr: "iommu-lab: unexpected argument 'extra' (usage: iommu-lab --help)\n" });
    assert.deepEqual(run(['help', 'check', 'extra']), { code: 2, stdout: '', stderr: "iommu-lab: unexpected argument 'extra' (usage: iommu-lab help [COMMAND])\n" });
  });

  it('every usage error of every command has one shape: "iommu-lab: CMD: what is wrong (see \'iommu-lab CMD --help\')", or (usage: ...) for the arguments', () => {
    const dump = join(root, 'test/fixtures/workspace/debugfs-dump');
    const walk = (...extra: string[]) => ['walk', '--debugfs', dump, '--device', '00:02.0', ...extra];
    const cases: string[][] = [];
    for (const c of commands) {
      const base = c.name === 'walk' ? walk('0x1000') : [c.name, f['one-line']!];
      cases.push(
        [...base, '--frob'],
        [...base, '-x'],
        [...base, '--format'],
        [...base, '--format', 'xml'],
        [...base, '--format='],
        [...base, ''],
      );
      if (c.maxPositionals !== undefined) cases.push([...base, 'a', 'b', 'c']);
      if ((c.minPositionals ?? 0) > 0) cases.push([c.name]);
    }
    cases.push(
      walk(),
      ['walk', '--device', '00:02.0', '0x1000'],
      ['walk', '--debugfs', dump, '0x1000'],
      ['walk', '--debugfs', '', '--device', '00:02.0', '0x1000'],
      ['walk', '--debugfs', dump, '--device', '', '0x1000'],
      walk('--dmesg', '', '0x1000'),
      ['walk', '--debugfs', dump, '--device', 'zz', '0x1000'],
      walk('0xzz'),
      walk('--write', '--exec', '0x0'),
      walk('--pasid', 'zz', '0x0'),
      walk('--pasid', '0x100000', '0x0'),
      walk('--priv', '0x0'),
      ['walk', '--debugfs', '-', '--dmesg', '-', '--device', '00:02.0', '0x0'],
      ['import-debugfs', '--dmesg', '-', '-'],
      ['import-debugfs', '--dmesg', '', dump],
      ['check', '--format', 'json', ''],
    );
    for (const args of cases) {
      const r = run(args);
      const name = args[0]!;
      const what = args.map((a) => `'${a}'`).join(' ');
      assert.equal(r.code, 2, `${what}: ${r.stderr}`);
      assert.equal(r.stdout, '', what);
      const m = new RegExp(`^iommu-lab: ${name}: ([^\\n]+) \\((?:see 'iommu-lab ${name} --help'|usage: iommu-lab ${name} [^\\n]+)\\)\\n$`).exec(r.stderr);
      assert.ok(m, `${what}: ${r.stderr}`);
      assert.doesNotMatch(m[1]!, /\((see|usage)|\)$/, `${what}: one pointer, at the end, after the message: ${r.stderr}`);
    }
    // An empty argument is said to be one, not looked up as a file named ''.
    assert.equal(run(['decode-log', '']).stderr, "iommu-lab: decode-log: argument 1 is an empty string (usage: iommu-lab decode-log [--format text|json] [FILE|-])\n");
    assert.equal(run(['walk', '--debugfs', '', '--device', '00:02.0', '0x0']).stderr, "iommu-lab: walk: option '--debugfs' has an empty value (see 'iommu-lab walk --help')\n");
  });

  it('an output that cannot be written names the command, for its help too', () => {
    const out = openSync('/dev/full', 'w');
    try {
      for (const args of [['decode-log', '--help'], ['help', 'lspci'], ['walk', '-h']]) {
        const r = spawnSync(process.execPath, [cli, ...args], { stdio: ['ignore', out, 'pipe'], encoding: 'utf8', timeout: 30_000 });
        const name = args[0] === 'help' ? args[1] : args[0];
        assert.deepEqual([r.status, r.stderr], [1, `iommu-lab: ${name}: cannot write the output: no space left on device\n`], args.join(' '));
      }
      const top = spawnSync(process.execPath, [cli, '--help'], { stdio: ['ignore', out, 'pipe'], encoding: 'utf8', timeout: 30_000 });
      assert.deepEqual([top.status, top.stderr], [1, 'iommu-lab: cannot write the output: no space left on device\n']);
    } finally {
      closeSync(out);
    }
  });

  it('a dump given as a directory names its files as the user can open them, DIR/FILE:LINE', () => {
    const dump = join(dir, 'dd');
    mkdirSync(join(dump, '0000:00:02.0'), { recursive: true });
    // An iommu_regset (Linux 6.12 debugfs.c: the title, the column header) with a third line that is no register row.
    writeFileSync(join(dump, 'iommu_regset'), 'IOMMU: dmar0 Register Base Address: fed90000\nName\t\t\tOffset\t\tContents\nbogus\n');
    writeFileSync(join(dump, '0000:00:02.0', 'domain_translation_struct'), 'Device 0000:00:02.0 @0x10016000\nIOVA_PFN\t\tPML5E\t\t\tPML4E\t\t\tPDPE\t\t\tPDE\t\t\tPTE\nbogus\n');
    const r = run(['import-debugfs', dump]);
    assert.equal(r.code, 1, r.stderr);
    const warnings = r.stdout.split('\n').filter((l) => l.includes(': warning: not a '));
    assert.deepEqual(
      warnings.map((l) => l.split(': warning: ')[0]),
      [`${dump}/iommu_regset:3`, `${dump}/0000:00:02.0/domain_translation_struct:3`],
      r.stdout,
    );
    for (const w of warnings) assert.ok(existsSync(w.replace(/:\d+: warning: .*$/, '')), w);
    const walk = run(['walk', '--debugfs', dump, '--device', '00:02.0', '0x0']);
    assert.ok(walk.stderr.split('\n').some((l) => l.startsWith(`${dump}/iommu_regset:3: warning: `)), walk.stderr);
  });

  it('no command prints a stack trace on any of these inputs', () => {
    // Every command that reads a file (vm-flow reads none: its argument names a flow).
    for (const c of commands.filter((x) => /FILE|DIR/.test(x.synopsis))) {
      for (const name of ['missing', 'dir', 'empty', 'random', 'nul', 'gzip', 'utf16']) {
        const r = run(c.name === 'walk' ? ['walk', '--debugfs', f[name]!, '--device', '00:02.0', '0x0'] : [c.name, f[name]!]);
        assert.ok(r.code === 1, `${c.name} ${name}: ${r.code} ${r.stderr}`);
        assert.equal(r.stderr.split('\n').length, 2, `${c.name} ${name}: ${r.stderr}`);
        assert.doesNotMatch(r.stderr, /\n\s+at |internal error/, `${c.name} ${name}`);
      }
    }
  });
});

describe('cli: the last-resort handler', () => {
  const io = () => {
    const out: string[] = [];
    const err: string[] = [];
    return { out, err, io: { out: (t: string) => void out.push(t), err: (t: string) => void err.push(t) } satisfies CliIo };
  };
  const crashing: Subcommand = {
    name: 'crash',
    summary: 'throws',
    synopsis: 'FILE',
    help: '',
    failure: 'never',
    options: {},
    async run(args, _io, state) {
      state.input = args.positionals[0];
      state.line = 42;
      const value = undefined as unknown as { field: number };
      return value.field;
    },
  };

  it('turns an unexpected exception into one line naming the input and line, "internal error", status 70', async () => {
    const t = io();
    const code = await runCli(['crash', 'kern.log'], [crashing], '0', t.io);
    assert.equal(code, 70);
    assert.deepEqual(t.out, []);
    assert.equal(t.err.length, 1);
    assert.match(t.err[0]!, /^iommu-lab: crash: kern\.log:42: internal error: .*undefined.* \(a bug: please report it with the input; IOMMU_LAB_DEBUG=1 shows where\)\n$/);
  });

  it('with debug on (IOMMU_LAB_DEBUG=1), adds the stack after that line', async () => {
    const t = io();
    assert.equal(await runCli(['crash', 'kern.log'], [crashing], '0', t.io, { debug: true }), 70);
    assert.match(t.err[0]!, /internal error: .*\n.*\n\s+at /);
  });
});
