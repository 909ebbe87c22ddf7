// Debian's Chromium, headless, driven by playwright-core. It may resolve nothing but loopback, and keeps
// its profile, crash pad and caches in a throw-away HOME: Debian's wrapper starts crashpad under
// ~/.config/chromium and dconf writes ~/.cache, and playwright refuses a --user-data-dir argument
// (docs/ARCHITECTURE.md, "Running a real VS Code").
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export function chromiumInstalled() {
  return existsSync(CHROMIUM);
}

export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  const home = await mkdtemp(join(tmpdir(), 'iommu-lab-chromium-'));
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost',
    ],
    env: { ...process.env, HOME: home, TMPDIR: home, XDG_CONFIG_HOME: join(home, '.config'), XDG_CACHE_HOME: join(home, '.cache') },
  });
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    await rm(home, { recursive: true, force: true });
  };
  return browser;
}
