// The release tests use the project's one code-server and Chromium start-up code (scripts/lib/), loaded at
// run time from the checkout: those modules find the repository from their own location.
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Browser } from 'playwright-core';

export const root = join(__dirname, '../../..');

export interface CodeServer {
  url: string;
  port: number;
  pgid: number;
  log(): string;
  remoteUri(path: string): string;
  workbenchUrl(o: { folder?: string; payload?: [string, string][] }): string;
  stop(): Promise<void>;
}

export interface CodeServerLib {
  codeServerInstalled(): boolean;
  freePort(preferred?: number): Promise<number>;
  installExtension(vsix: string, dir: string): Promise<string>;
  startCodeServer(o?: { dir?: string; port?: number; env?: Record<string, string> }): Promise<CodeServer>;
  processGroupMembers(pgid: number): number[];
}

export interface ChromiumLib {
  chromiumInstalled(): boolean;
  launchChromium(): Promise<Browser>;
}

const load = <T>(file: string): Promise<T> => import(pathToFileURL(join(root, 'scripts/lib', file)).href) as Promise<T>;
export const codeServerLib = () => load<CodeServerLib>('code-server.mjs');
export const chromiumLib = () => load<ChromiumLib>('chromium.mjs');

/** Resolves with the first truthy value of `check`, polled every 50 ms; rejects naming `what` at the deadline. */
export async function until<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, ms: number): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
