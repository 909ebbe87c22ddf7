// The host VM tests run on: the examples' host (src/core/vmm/example-host.ts), so a test and the
// `iommu-lab vm-flow` examples start from the same platform.
export { ATS_PRI_PASID, exampleHost as vmHost } from '../../src/core/vmm/example-host';
