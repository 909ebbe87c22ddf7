// The iommufd uAPI struct layouts and the ioctl envelope, against the kernel's header and op table. The
// expected sizes, offsets and minimum sizes are test/fixtures/iommufd-uapi.json, read by hand off
// include/uapi/linux/iommufd.h and drivers/iommu/iommufd/main.c (the commits are in the fixture), not
// produced by the model.
import * as assert from 'node:assert/strict';
import { KernelError } from '../../src/core/driver/errors';
import { iommufdIoctl, IOMMUFD_CMD, ioctlStructSize, UAPI_STRUCTS } from '../../src/core/iommufd';
import { platform, UAPI as FIXTURE } from '../support/iommufd';

/** `n` zero bytes whose first u32 says `size`. */
function arg(n: number, size = n): Uint8Array {
  const b = new Uint8Array(n);
  new DataView(b.buffer).setUint32(0, size, true);
  return b;
}

/** What an ioctl returned: 'ok', the errno, or 'not modelled' (the envelope passed, the command is not modelled). */
function outcome(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    if (e instanceof RangeError && /not modelled/.test(e.message)) return 'not modelled';
    throw e;
  }
}

describe('iommufd uAPI: struct layouts against include/uapi/linux/iommufd.h', () => {
  for (const [name, want] of Object.entries(FIXTURE.structs)) {
    it(`struct ${name}: sizeof ${want.size}, every member at the header's offset`, () => {
      const got = UAPI_STRUCTS[name as keyof typeof UAPI_STRUCTS];
      assert.ok(got, `the model has no layout for struct ${name}`);
      assert.equal(got.size, want.size, `sizeof(struct ${name})`);
      assert.deepEqual(Object.fromEntries([...got.fields.values()].map((f) => [f.name, f.offset])), want.offsets);
    });
  }

  it('the model lays out no struct the header fixture lacks', () => {
    assert.deepEqual(Object.keys(UAPI_STRUCTS).sort(), Object.keys(FIXTURE.structs).sort());
  });
});

describe('iommufd uAPI: the ioctl table against iommufd_ioctl_ops (main.c)', () => {
  it('every command of the header has its number, its struct and min_size = offsetofend(struct, last)', () => {
    assert.deepEqual(Object.keys(IOMMUFD_CMD).sort(), Object.keys(FIXTURE.ioctls).sort());
    for (const [name, want] of Object.entries(FIXTURE.ioctls)) {
      const nr = IOMMUFD_CMD[name as keyof typeof IOMMUFD_CMD];
      assert.equal(nr, want.nr, `IOMMUFD_CMD_${name}`);
      assert.deepEqual(ioctlStructSize(nr), { struct: want.struct, size: FIXTURE.structs[want.struct]!.size, min: want.minSize }, name);
    }
  });

  // iommufd_fops_ioctl: user_size < op->min_size is EINVAL; copy_struct_from_user accepts a larger struct
  // whose tail is zero and refuses a non-zero tail with E2BIG; a smaller one (down to min_size) is
  // zero-extended. The command then runs on the same fields whatever the size, so its outcome is the same.
  for (const [name, want] of Object.entries(FIXTURE.ioctls)) {
    const size = FIXTURE.structs[want.struct]!.size;
    it(`${name}: size ${want.minSize - 1} EINVAL; ${want.minSize}, ${size} and ${size + 8} with a zero tail alike; a non-zero byte at ${size} or ${size + 7} E2BIG`, () => {
      const { fd } = platform();
      const nr = want.nr;
      assert.equal(outcome(() => iommufdIoctl(fd, nr, arg(size, want.minSize - 1))), 'EINVAL', 'below min_size');
      const exact = outcome(() => iommufdIoctl(fd, nr, arg(size)));
      assert.notEqual(exact, 'E2BIG');
      assert.equal(outcome(() => iommufdIoctl(fd, nr, arg(want.minSize))), exact, `a ${want.minSize}-byte struct is zero-extended`);
      const longer = arg(size + 8);
      assert.equal(outcome(() => iommufdIoctl(fd, nr, longer)), exact, 'zero tail');
      assert.deepEqual([...longer.subarray(size)], new Array(8).fill(0), 'outputs are written only within the kernel struct');
      for (const at of [size, size + 7]) {
        const dirty = arg(size + 8);
        dirty[at] = 1;
        assert.equal(outcome(() => iommufdIoctl(fd, nr, dirty)), 'E2BIG', `non-zero byte ${at}`);
      }
    });
  }

  it('a tail that runs past the user memory faults (EFAULT) unless a non-zero byte comes first (E2BIG)', () => {
    const { fd } = platform();
    const size = FIXTURE.structs.iommu_destroy!.size;
    // The argument is `size + 4` bytes long but claims `size + 8`: check_zeroed_user faults at the end.
    const short = arg(size + 4, size + 8);
    assert.equal(outcome(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, short)), 'EFAULT');
    short[size + 1] = 1;
    assert.equal(outcome(() => iommufdIoctl(fd, IOMMUFD_CMD.DESTROY, short)), 'E2BIG');
  });
});
