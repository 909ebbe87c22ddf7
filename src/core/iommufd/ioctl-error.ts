import { type Errno, KernelError } from '../driver/errors';

/**
 * An ioctl failure that still wrote output fields, as some iommufd ioctls do: HWPT_INVALIDATE reports how
 * many entries it handled, IOAS_IOVA_RANGES how many ranges there are. `out` holds those fields.
 */
export class IoctlError<O> extends KernelError {
  constructor(
    errno: Errno,
    message: string,
    readonly out: O,
  ) {
    super(errno, message);
  }

  /** Re-throws a driver error with the ioctl's output fields attached. */
  static wrap<O>(e: unknown, out: O): never {
    if (e instanceof KernelError) throw new IoctlError(e.errno, e.message.slice(e.errno.length + 2), out);
    throw e;
  }
}
