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
} as const;

export const SettingIds = {
  traceServer: 'iommuLab.trace.server',
} as const;

/** The LanguageClient id: VS Code reads `<id>.trace.server` for protocol tracing. */
export const LANGUAGE_CLIENT_ID = 'iommuLab';
