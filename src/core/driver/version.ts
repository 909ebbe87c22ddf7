import type { KernelVersion } from './log';

/**
 * Kernel version boundaries for behaviour (not formats: log.ts picks those). A boundary is the first release
 * that has a change; each caller names the commit beside its boundary.
 */
function rank(v: KernelVersion): number {
  const [major, minor] = v.split('.').map(Number) as [number, number];
  return major * 1000 + minor;
}

/** Whether `v` is `since` or later. */
export function atLeast(v: KernelVersion, since: KernelVersion): boolean {
  return rank(v) >= rank(since);
}
