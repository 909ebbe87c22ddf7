// `npm test`: everything, in order, ending with one line "N passed, N failed" that totals every suite.
//   1. type checks (one per layer's tsconfig, so a stray Node or vscode import in a pure layer fails)
//   2. the build (esbuild bundles + metafiles the layering test reads)
//   3. unit tests (mocha, Node, no VS Code; includes the CLI and language server as real processes)
//   4. in a real VS Code (one code-server and one Chromium for both):
//      extension-host tests (mocha inside the extension host) and UI tests (Playwright).
//   5. release (test/release/, mocha in Node): what a user runs, as the README says: `npm run package`
//      and the VSIX installed into a plain code-server, and `npm start` stopped by SIGTERM and Ctrl-C.
// A suite that does not report (crash, hang, did not start) counts as a failure, never as zero tests.
// Options: --only typecheck|unit|vscode|release (repeatable), --grep PATTERN (unit and release tests).
import { spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { format } from 'node:util';
import { ensureNpmPackages } from './lib/npm-packages.mjs';

const root = new URL('..', import.meta.url).pathname.replace(/\/$/, '');
const only = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--only' ? [a] : []));
const grepAt = process.argv.indexOf('--grep');
const wants = (suite) => only.length === 0 || only.includes(suite);
const results = []; // { suite, passes, failures, note, ms }
const t0 = performance.now();

function record(suite, passes, failures, ms, note = '') {
  results.push({ suite, passes, failures, ms, note });
  console.log(`\n[${suite}] ${passes} passed, ${failures} failed${note ? ` (${note})` : ''} in ${(ms / 1000).toFixed(1)} s\n`);
}

function run(cmd, args, opts = {}) {
  return spawnSync(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
}

// 0. What a fresh clone lacks: the npm packages, and for the VS Code suites code-server and Chromium.
if (!ensureNpmPackages('npm test')) process.exit(1);

// 1. Type checks.
if (wants('typecheck')) {
  const configs = ['tsconfig.json', ...['core', 'dsl', 'readers', 'protocol', 'webview'].map((d) => `src/${d}/tsconfig.json`)];
  const started = performance.now();
  let passes = 0;
  let failures = 0;
  for (const config of configs) {
    const dir = join(root, config, '..');
    const hasSources = config === 'tsconfig.json' || readdirSync(dir, { recursive: true }).some((f) => String(f).endsWith('.ts'));
    if (!hasSources) continue;
    const r = run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', config, '--pretty'], { stdio: 'pipe', encoding: 'utf8' });
    if (r.status === 0) {
      passes++;
      console.log(`  ✔ tsc -p ${config}`);
    } else {
      failures++;
      console.log(`  ✖ tsc -p ${config}\n${r.stdout}${r.stderr}`);
    }
  }
  record('typecheck', passes, failures, performance.now() - started);
}

// 2. Build.
{
  const started = performance.now();
  const ok = run(process.execPath, ['scripts/build.mjs']).status === 0;
  record('build', ok ? 1 : 0, ok ? 0 : 1, performance.now() - started);
  if (!ok) finish();
}

const scratch = await mkdtemp(join(tmpdir(), 'iommu-lab-test-'));
process.on('exit', () => rmSync(scratch, { recursive: true, force: true }));

function readResult(file) {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch {
    return undefined;
  }
}

// A mocha suite in a child process: a crash there cannot take the totals with it.
async function mochaSuite(suite, dir) {
  const started = performance.now();
  const file = join(scratch, `${suite}.json`);
  const args = ['scripts/lib/run-mocha.mjs', dir, file, ...(grepAt > 0 ? ['--grep', process.argv[grepAt + 1]] : [])];
  const code = await new Promise((resolve) => spawn(process.execPath, args, { cwd: root, stdio: 'inherit' }).on('exit', resolve));
  const r = readResult(file);
  if (!r) record(suite, 0, 1, performance.now() - started, `the ${suite} suite did not report (exit ${code})`);
  else record(suite, r.passes, r.failures + (r.passes + r.failures === r.planned ? 0 : 1), performance.now() - started);
}

// 3. Unit tests.
if (wants('unit')) await mochaSuite('unit', 'out/test/unit');

// 4. A real VS Code: extension-host tests, then UI tests, against one code-server and one browser.
if (wants('vscode')) {
  await runInVsCode();
}

// 5. Release tests: they start their own code-servers (a plain one with the installed VSIX; npm start's).
if (wants('release')) {
  const { chromiumInstalled } = await import('./lib/chromium.mjs');
  if (run('bash', ['scripts/install-code-server.sh']).status !== 0 || !chromiumInstalled()) {
    record('release', 0, 1, 0, 'code-server or Chromium is missing; see the messages above');
  } else await mochaSuite('release', 'out/test/release');
}

finish();

async function runInVsCode() {
  const install = run('bash', ['scripts/install-code-server.sh']);
  const { startCodeServer } = await import('./lib/code-server.mjs');
  const { chromiumInstalled, launchChromium } = await import('./lib/chromium.mjs');
  if (install.status !== 0 || !chromiumInstalled()) {
    record('vscode', 0, 1, 0, 'code-server or Chromium is missing; see the messages above');
    return;
  }
  const TAG = '\u200bIOMMU-LAB-TEST ';
  const resultFile = join(scratch, 'extension-host.json');
  const started = performance.now();
  let cs;
  let browser;
  try {
    cs = await startCodeServer({ env: { HARNESS_RESULT_FILE: resultFile, HARNESS_OUTPUT_TAG: TAG } });
    browser = await launchChromium();
    const context = await browser.newContext();
    console.log(`code-server ready in ${cs.readyMs} ms at ${cs.url}`);

    // 4a. Extension-host tests: mocha runs inside VS Code's extension host; the workbench reports the
    // result through window.codeAutomationExit, which must exist before the page loads.
    const page = await context.newPage();
    let exit;
    const exited = new Promise((resolve) => (exit = resolve));
    await page.exposeFunction('codeAutomationExit', (code) => exit(Number(code)));
    page.on('console', async (msg) => {
      const args = await Promise.all(msg.args().map((a) => a.jsonValue().catch(() => '')));
      const text = typeof args[0] === 'string' && args[0].startsWith('%c') ? format(...args.slice(2)) : format(...args);
      if (text.startsWith(TAG)) process.stdout.write(text.slice(TAG.length) + '\n');
      else if (process.env.HARNESS_VERBOSE) process.stdout.write(`[page] ${text}\n`);
    });
    await page.goto(
      cs.workbenchUrl({
        folder: join(root, 'test/fixtures/workspace'),
        payload: [
          ['extensionDevelopmentPath', cs.remoteUri(root)],
          ['extensionTestsPath', cs.remoteUri(join(root, 'out/test/vscode/index'))],
        ],
      }),
    );
    let timer;
    const code = await Promise.race([exited, new Promise((resolve) => (timer = setTimeout(() => resolve('timeout'), 240_000)))]);
    clearTimeout(timer);
    const r = readResult(resultFile);
    const ms = performance.now() - started;
    if (code === 'timeout' || !r) {
      await page.screenshot({ path: join(root, 'test-results/extension-host-timeout.png') }).catch(() => {});
      record('extension-host', r?.passes ?? 0, (r?.failures ?? 0) + 1, ms, code === 'timeout' ? 'timed out after 240 s' : `no result reported (exit ${code})`);
    } else {
      const incomplete = r.passes + r.failures !== r.planned ? 1 : 0;
      record('extension-host', r.passes, r.failures + incomplete, ms, incomplete ? `only ${r.passes + r.failures} of ${r.planned} ran` : '');
    }
    await page.close();

    // 4b. UI tests in this process, driving the same browser against the same code-server.
    const uiStarted = performance.now();
    globalThis.__IOMMU_LAB_UI__ = {
      context,
      root,
      workbenchUrl: (folder) => cs.workbenchUrl({ folder, payload: [['extensionDevelopmentPath', cs.remoteUri(root)]] }),
    };
    const { createRequire } = await import('node:module');
    const Mocha = createRequire(import.meta.url)('mocha');
    const mocha = new Mocha({ ui: 'bdd', color: process.stdout.isTTY, timeout: 90_000 });
    for (const f of readdirSync(join(root, 'out/test/ui')).sort()) if (f.endsWith('.test.js')) mocha.addFile(join(root, 'out/test/ui', f));
    const ui = await new Promise((resolve) => {
      const runner = mocha.run(() => resolve({ planned: runner.total, passes: runner.stats.passes, failures: runner.stats.failures }));
    });
    const missing = ui.planned === 0 || ui.passes + ui.failures !== ui.planned ? 1 : 0;
    record('ui', ui.passes, ui.failures + missing, performance.now() - uiStarted, missing ? 'not every UI test ran' : '');
  } catch (e) {
    record('vscode', 0, 1, performance.now() - started, `harness error: ${e instanceof Error ? e.message : String(e)}`);
    if (cs) console.log(cs.log().slice(-4000));
  } finally {
    await browser?.close().catch(() => {});
    await cs?.stop();
  }
}

function finish() {
  const passes = results.reduce((n, r) => n + r.passes, 0);
  const failures = results.reduce((n, r) => n + r.failures, 0);
  console.log(`suites: ${results.map((r) => `${r.suite} ${r.passes}/${r.passes + r.failures}`).join(', ')}; ${((performance.now() - t0) / 1000).toFixed(0)} s in all`);
  console.log(`${passes} passed, ${failures} failed`);
  process.exit(failures > 0 ? 1 : 0);
}
