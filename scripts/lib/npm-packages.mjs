// What a fresh clone lacks first: the npm packages. npm start, npm test and npm run package call this
// before anything else, so each of them works on a fresh clone as the README says.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

export const root = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

/** Runs `npm ci` when node_modules has not been installed from the lock file; false if that fails. */
export function ensureNpmPackages(script) {
  if (existsSync(join(root, 'node_modules/.package-lock.json'))) return true;
  console.log(`${script}: installing npm packages (npm ci)`);
  return spawnSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' }).status === 0;
}
