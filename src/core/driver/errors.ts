/**
 * Errors as the kernel returns them: an errno and a message. Callers (the iommufd layer, the CLI, tests)
 * check `errno`, as userspace checks the return value of an ioctl.
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  EINVAL: 22,
  ENOSPC: 28,
  ERANGE: 34,
  EOVERFLOW: 75,
  EOPNOTSUPP: 95,
  E2BIG: 7,
  ENOMEM: 12,
  EBADF: 9,
  ENOTTY: 25,
  ESPIPE: 29,
  EMSGSIZE: 90,
  EADDRINUSE: 98,
} as const;

export type Errno = keyof typeof ERRNO;

export class KernelError extends Error {
  constructor(
    readonly errno: Errno,
    message: string,
  ) {
    super(`${errno}: ${message}`);
  }

  /** The negative value a kernel function returns, e.g. -22 for EINVAL. */
  get code(): number {
    return -ERRNO[this.errno];
  }
}

export function fail(errno: Errno, message: string): never {
  throw new KernelError(errno, message);
}
