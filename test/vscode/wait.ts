import type * as vscode from 'vscode';

/**
 * Resolves with the first truthy value of `check`, evaluated now and after each `event` fires.
 * No polling and no fixed sleeps; the timeout only guards against a hang and names what never happened.
 */
export function waitFor<T>(what: string, event: vscode.Event<unknown>, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const first = check();
    if (first) return resolve(first);
    const timer = setTimeout(() => {
      sub.dispose();
      reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
    }, timeoutMs);
    const sub = event(() => {
      const v = check();
      if (v) {
        clearTimeout(timer);
        sub.dispose();
        resolve(v);
      }
    });
  });
}

/**
 * For state VS Code announces with no event (an extension becoming active): re-checks `check` every 20 ms
 * until it holds. The timeout only guards against a hang.
 */
export function waitUntil<T>(what: string, check: () => T | undefined | false, timeoutMs = 30_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const tick = () => {
      const v = check();
      if (v) return resolve(v);
      if (Date.now() - started > timeoutMs) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}
