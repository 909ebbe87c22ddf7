// Every command the README and docs/ show in a fenced shell block, run as written from the repository's
// root, must do what the text says. Each command is either in `run` (the exit status and phrases of the
// output it must show) or in `notRun` (why a test cannot run it); a command in neither fails the first
// test, so a new example cannot go unchecked, and an entry the documents no longer show fails too.
// `iommu-lab` is the package's bin (dist/cli.js), put on PATH as `npm link` would.
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(__dirname, '../../..');

interface Expect {
  status: number;
  /** Phrases stdout and stderr together must contain: what the documents promise, not incidental wording. */
  shows: RegExp[];
  /** Phrases they must not contain. */
  hides?: RegExp[];
}

const run: Record<string, Expect> = {
  'node dist/cli.js --help': {
    status: 0,
    // "every subcommand, one line each"
    shows: ['check', 'decode-log', 'import-debugfs', 'walk', 'lspci', 'vm-flow'].map((c) => new RegExp(`^ +${c} +\\S`, 'm')),
  },
  'node dist/cli.js check examples/*.iommu': {
    // The examples are valid topologies: no "file:line:col: error:" lines, and success.
    status: 0,
    shows: [],
    hides: [/error:/],
  },
  // test/fixtures/workspace/debugfs-dump/0000:6a:01.0/5/domain_translation_struct maps IOVA_PFN 0x40000
  // with PTE 0x0000000123400803 (R, W, SNP; page 0x123400000), and dmar_translation_struct gives PASID 5
  // of 6a:01.0 the entry ...:0x0000000010041089 (P, PGTT=2 second-level, table 0x10041000, the one that
  // file dumps). So a write to 0x40000234 is allowed and lands at 0x123400234.
  // The flows of src/core/vmm/seed-flows.ts: the list, seed 000 with its lookups, seed 002 in QEMU's trace
  // format (hw/i386/trace-events: vtd_inv_desc_iotlb_pages "iotlb invalidate domain 0x%"PRIx16...).
  'iommu-lab vm-flow list': { status: 0, shows: [/^000\t/m, /^004\t/m, /^migrate\t/m] },
  'iommu-lab vm-flow 000': { status: 0, shows: [/ALLOC_PASID: status 0/, /host-driver G-to-H search \(work queue programming\)/, /host-driver H-to-G lookup \(page request\)/, /findings: none/] },
  'iommu-lab vm-flow 002 --qemu-trace': { status: 0, shows: [/^vtd_inv_desc_cc_devices context invalidate devices sid 0x18 fmask 0x0$/m, /^vtd_inv_desc invalidate desc type /m], hides: [/Flow 002/] },
  'iommu-lab walk --debugfs test/fixtures/workspace/debugfs-dump --device 0000:6a:01.0 --pasid 5 --write 0x40000234': {
    status: 0,
    shows: [/\b0x0*123400234\b/],
  },
};

const notRun: Record<string, string> = {
  'npm start': 'serves VS Code until stopped; test/release/start.test.ts starts and stops it (release suite)',
  'npm test': 'runs every suite, this one included',
  'npm run package': 'test/release/vsix.test.ts runs it, checks the VSIX and installs it (release suite)',
  'code --install-extension dist/iommu-lab.vsix': "needs desktop VS Code's `code`; the release suite installs the same VSIX with code-server --install-extension",
  'npm link && iommu-lab --version': "installs into npm's global prefix; these tests put the same bin on PATH themselves",
  'dmesg | iommu-lab decode-log': "reads this machine's kernel log",
  'iommu-lab decode-log --format json kern.log': 'kern.log stands for your own log; the CLI tests decode the logs in test/fixtures/logs',
  'sudo lspci -vvv | iommu-lab lspci': "needs root and this machine's PCI devices",
  'sudo cp -r /sys/kernel/debug/iommu/intel dump': "needs root and this machine's debugfs",
  'iommu-lab import-debugfs dump': 'dump is the copy the line before makes as root',
  'iommu-lab decode-log [FILE|-] [--format text|json]': 'a usage synopsis ([FILE|-] is notation, not a command)',
  'iommu-lab lspci      [FILE|-] [--format text|json]': 'a usage synopsis ([FILE|-] is notation, not a command)',
};

interface Command {
  text: string;
  where: string;
}

const SHELL = /^(sh|bash|shell|console|zsh|shell-session)$/;
// An unlabelled block is a shell block when each of its lines starts like a command or is a comment.
const COMMANDISH = /^(\$ )?(npm|npx|node|iommu-lab|code|code-server|sudo|dmesg|git|bash|sh|cat|cp)\s/;

/** The commands of the fenced shell blocks of one Markdown file, comments and prompts removed. */
function commandsIn(file: string): Command[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const out: Command[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^\s*(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[1]!;
    const body: { line: number; text: string }[] = [];
    let j = i + 1;
    for (; j < lines.length && !lines[j]!.trim().startsWith(fence); j++) body.push({ line: j + 1, text: lines[j]! });
    const lang = open[2]!;
    i = j;
    if (!(SHELL.test(lang) || (lang === '' && body.every((b) => !b.text.trim() || b.text.trim().startsWith('#') || COMMANDISH.test(b.text.trim()))))) continue;
    for (let k = 0; k < body.length; k++) {
      const start = body[k]!;
      let text = start.text;
      while (text.endsWith('\\') && k + 1 < body.length) text = text.slice(0, -1) + ' ' + body[++k]!.text.trim();
      text = text.replace(/^\s*\$ /, '').replace(/(^|\s)#.*$/, '').trim();
      if (text) out.push({ text, where: `${file}:${start.line}` });
    }
  }
  return out;
}

const documents = ['README.md', ...readdirSync(join(root, 'docs'), { recursive: true }).map(String).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
const commands = documents.flatMap(commandsIn);

describe('the commands the README and docs/ show', () => {
  let bin: string;

  before(() => {
    bin = mkdtempSync(join(tmpdir(), 'iommu-lab-bin-'));
    symlinkSync(join(root, 'dist/cli.js'), join(bin, 'iommu-lab'));
  });

  after(() => rmSync(bin, { recursive: true, force: true }));

  it('are each either run here with an expectation or listed as not run, with the reason', () => {
    assert.ok(commands.length >= Object.keys(run).length, 'the documents were read');
    const unknown = commands.filter((c) => !(c.text in run) && !(c.text in notRun)).map((c) => `${c.where}: ${c.text}`);
    assert.deepEqual(unknown, [], 'commands with no expectation: add each to `run` (status and phrases) or to `notRun` (why not)');
  });

  it('leave no entry here that the documents no longer show', () => {
    const shown = new Set(commands.map((c) => c.text));
    assert.deepEqual([...Object.keys(run), ...Object.keys(notRun)].filter((c) => !shown.has(c)), []);
  });

  for (const c of commands.filter((c) => c.text in run)) {
    it(`${c.text}  (${c.where})`, () => {
      const want = run[c.text]!;
      const r = spawnSync('sh', ['-c', c.text], {
        cwd: root,
        encoding: 'utf8',
        timeout: 60_000,
        env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, NO_COLOR: '1' },
      });
      const output = `${r.stdout}${r.stderr}`;
      assert.equal(r.status, want.status, `exit status of: ${c.text}\n${output}`);
      for (const phrase of want.shows) assert.match(output, phrase);
      for (const phrase of want.hides ?? []) assert.doesNotMatch(output, phrase);
    });
  }
});
