/** The iommufd uAPI layer over the driver model: see iommufd.ts for the context and its ioctls. */
export { Iommufd, VFIO_IOAS_OP, type IommufdOptions, type HwptAllocCmd, type HwptInvalidateCmd, type VtdS1Invalidate, type GetHwInfoOut } from './iommufd';
export { VfioDevice } from './vfio-device';
export { FaultFd, type HwptPgfault, type HwptPageResponse } from './fault';
export { IoctlError } from './ioctl-error';
export { IommufdAccess, readBytes, writeBytes, type AccessPin, type AccessUnmapHandler } from './access';
export { VTD_MSI_WINDOW } from './attach';
export { iommufdIoctl, ioctlStructSize, IOMMUFD_CMD, IOMMUFD_CMD_BASE } from './ioctl';
export type { VtdS1Data } from './hwpt-alloc';
export type { HwptNested, HwptPaging } from './hwpt';
export type { Ioas } from './ioas';
export * from './uapi';
export { UAPI_STRUCTS, type StructLayout, type FieldLayout, type UapiStructName } from './uapi-layout';
