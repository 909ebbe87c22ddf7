/**
 * Every id the extension shares with package.json. test/unit/manifest.test.ts checks this file and the
 * manifest against each other, so an id renamed on one side only fails the build.
 */
export const ViewContainerIds = {
  iommu: 'iommu',
} as const;

export const ViewIds = {
  topology: 'iommu.topology',
} as const;

export const CommandIds = {
  openTopology: 'iommu.openTopology',
  newTopology: 'iommu.newTopology',
  refreshTopology: 'iommu.refreshTopology',
  revealTopologyItem: 'iommu.revealTopologyItem',
  restartLanguageServer: 'iommu.restartLanguageServer',
  showOutput: 'iommu.showOutput',
  explainLog: 'iommu.explainLog',
  importDebugfs: 'iommu.importDebugfs',
  walkDebugfsAddress: 'iommu.walkDebugfsAddress',
} as const;

/** Languages whose documents get log hovers and "Explain Faults in This Log" (`log` is VS Code's built-in one). */
export const LogLanguageIds = ['log', 'plaintext'] as const;

/** Context keys the extension sets for `when` clauses in package.json. */
export const ContextKeys = {
  /** True once a debugfs dump was imported in this window: enables "Walk an Address in the debugfs Import". */
  debugfsImported: 'iommu.debugfsImported',
} as const;

/** Output channels, by the name the user sees in the Output view. */
export const OutputChannelNames = {
  main: 'IOMMU Lab',
  log: 'IOMMU Lab: Log',
  debugfs: 'IOMMU Lab: debugfs',
} as const;

export const SettingIds = {
  traceServer: 'iommuLab.trace.server',
} as const;

/** The LanguageClient id: VS Code reads `<id>.trace.server` for protocol tracing. */
export const LANGUAGE_CLIENT_ID = 'iommuLab';
