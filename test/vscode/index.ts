// Runs inside VS Code's extension host. The same file serves both routes: code-server (npm test, here)
// and @vscode/test-electron (npm run test:electron, where VS Code can be downloaded). Both load this
// module as `extensionTestsPath` and call run(), which must reject when a test fails.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as util from 'node:util';
import Mocha from 'mocha';

export function run(): Promise<void> {
  // In the browser route the extension host's console reaches the page console mixed with the workbench's
  // own lines; the tag lets the runner pick ours out. VS Code makes console.log read-only, so the tag goes
  // through mocha's reporter hook.
  const tag = process.env.HARNESS_OUTPUT_TAG ?? '';
  if (tag) {
    const log = console.log.bind(console);
    Mocha.reporters.Base.consoleLog = (...a: unknown[]) => log(tag + util.format(...a));
  }
  const mocha = new Mocha({ ui: 'bdd', color: false, timeout: 60_000 });
  for (const f of fs.readdirSync(__dirname).sort()) if (f.endsWith('.test.js')) mocha.addFile(path.join(__dirname, f));
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failures) => {
      const s = runner.stats!;
      const line = `${s.passes} passed, ${s.failures} failed`;
      console.log(tag + line);
      if (process.env.HARNESS_RESULT_FILE) {
        fs.writeFileSync(process.env.HARNESS_RESULT_FILE, JSON.stringify({ planned: runner.total, passes: s.passes, failures: s.failures, line }));
      }
      if (failures > 0) reject(new Error(`${failures} tests failed.`));
      else resolve();
    });
  });
}
