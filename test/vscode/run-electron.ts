// `npm run test:electron`: the standard route on a machine that can download VS Code. It runs the same
// extension-host tests (test/vscode/*.test.ts) in VS Code 1.100.3, the version code-server ships here.
import * as path from 'node:path';
import { runTests } from '@vscode/test-electron';

async function main(): Promise<void> {
  const root = path.resolve(__dirname, '../../..');
  try {
    await runTests({
      version: '1.100.3',
      extensionDevelopmentPath: root,
      extensionTestsPath: path.join(root, 'out/test/vscode/index'),
      launchArgs: [path.join(root, 'test/fixtures/workspace'), '--disable-extensions', '--disable-workspace-trust'],
    });
  } catch (e) {
    console.error(`extension tests failed: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  }
}

void main();
