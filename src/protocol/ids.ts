/**
 * Names shared by both ends of a process boundary (extension host, language server, CLI).
 * Keeping them here means a rename fails to compile on every side at once.
 */
export const LANGUAGE_ID = 'iommu-topology';
export const TOPOLOGY_FILE_EXTENSION = '.iommu';
/** `source` of every diagnostic the language server publishes. */
export const DIAGNOSTIC_SOURCE = 'iommu-lab';
export const LANGUAGE_SERVER_NAME = 'IOMMU Topology Language Server';
