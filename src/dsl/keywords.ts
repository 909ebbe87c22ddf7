/**
 * Reserved words of the topology language, by role. The TextMate grammar colours each group with its own
 * scope (a unit test keeps the grammar and this list in step); the lexer classifies them as keywords.
 */
export const KEYWORD_GROUPS = {
  /** Things a topology declares. */
  objects: ['iommu', 'device', 'domain', 'vm', 'process', 'mdev', 'viommu', 'ioas', 'hwpt', 'fault-queue'],
  /** Things a scenario does. */
  operations: [
    'attach', 'detach', 'replace', 'map', 'unmap', 'bind', 'unbind', 'dma', 'invalidate', 'respond',
    'alloc', 'free', 'expect', 'step',
  ],
  /** Attributes, modes and flags. */
  attributes: [
    'pasid', 'rid', 'iova', 'gpa', 'hpa', 'size', 'read', 'write', 'exec', 'priv', 'ats', 'pri',
    'cap', 'ecap', 'scalable', 'legacy', 'nested', 'paging', 'identity', 'blocked', 'sva',
    'first-level', 'second-level', 'pass-through', 'caching-mode', 'parent', 'levels', 'on', 'at',
  ],
  constants: ['true', 'false'],
} as const;

export const KEYWORDS: readonly string[] = Object.values(KEYWORD_GROUPS).flat();

const keywordSet = new Set(KEYWORDS);

export function isKeyword(word: string): boolean {
  return keywordSet.has(word);
}
