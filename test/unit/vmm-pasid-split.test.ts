import * as assert from 'node:assert/strict';
import { KernelError } from '../../src/core/driver/errors';
import { PasidAllocator, type PasidCapable } from '../../src/core/driver/pasid-alloc';
import { PasidSplit, type SplitDevice } from '../../src/core/vmm/pasid-split';
import { throwsErrno } from '../support/kernel-platform';

const wide: SplitDevice = { name: 'dsa0', maxPasids: 2 ** 20, enqcmd: true };
const vf: SplitDevice = { name: 'vf0', maxPasids: 2 ** 20, enqcmd: false };

describe('vmm: the local/global PASID split', () => {
  it("splits at seed 003's example: local [0, 1024) for the guest, global [1024, 2^20) for the host", () => {
    const split = new PasidSplit(1024);
    assert.deepEqual(split.localRange, { min: 1, max: 1023 });
    assert.deepEqual(split.globalRange, { min: 1024, max: 2 ** 20 - 1 });
    assert.deepEqual([0, 1023, 1024, 2 ** 20 - 1, 2 ** 20].map((p) => [split.isLocal(p), split.isGlobal(p)]), [
      [true, false],
      [true, false],
      [false, true],
      [false, true],
      [false, false],
    ]);
  });

  it('confines the guest through the advertised width: Linux sizes a unit at 2 << ECAP.PSS PASIDs', () => {
    // dmar.c (6.12): iommu->iommu.max_pasids = 2UL << ecap_pss(iommu->ecap).
    const linuxMaxPasids = (pss: number) => 2 * 2 ** pss;
    const split = new PasidSplit(1024);
    assert.equal(split.advertisedPss(), 9);
    assert.equal(linuxMaxPasids(split.advertisedPss()), 1024);
    assert.equal(split.advertisedPasidBits(), 10);
    assert.equal(split.confines(9), true);
    assert.equal(split.confines(10), false);
    // Not a power of two: the width can only stop below the split.
    const odd = new PasidSplit(1500);
    assert.equal(linuxMaxPasids(odd.advertisedPss()), 1024);
    throwsErrno(() => new PasidSplit(1), 'EINVAL');
    throwsErrno(() => new PasidSplit(2 ** 20), 'EINVAL');
  });

  it('allocates global PASIDs at or above the split, failing with -ENOSPC as iommu_alloc_global_pasid does', () => {
    const split = new PasidSplit(1024);
    const host = new PasidAllocator();
    assert.equal(host.allocGlobal(wide), 1, "the host's own SVA PASIDs start at IOMMU_FIRST_GLOBAL_PASID");
    assert.equal(split.allocGlobal(host, [wide, vf]), 1024);
    assert.equal(split.allocGlobal(host, [wide]), 1025);
    // ida_alloc_range(1, max_pasids - 1): a device of 1024 PASIDs has nothing at or above 1024, and
    // iommu_alloc_mm_data turns IOMMU_PASID_INVALID into -ENOSPC.
    const narrow: PasidCapable = { name: 'narrow', maxPasids: 1024 };
    assert.throws(
      () => split.allocGlobal(host, [wide, narrow]),
      (e: unknown) => e instanceof KernelError && e.errno === 'ENOSPC' && e.code === -28,
    );
    const small = new PasidSplit(2 ** 20 - 2);
    assert.equal(small.allocGlobal(host, [wide]), 2 ** 20 - 2);
    assert.equal(small.allocGlobal(host, [wide]), 2 ** 20 - 1);
    throwsErrno(() => small.allocGlobal(host, [wide]), 'ENOSPC');
  });

  it('refuses a global PASID on a device too narrow for it with -EOVERFLOW, as iommu_alloc_mm_data does', () => {
    const split = new PasidSplit(1024);
    const narrow: PasidCapable = { name: 'narrow', maxPasids: 2048 };
    assert.equal(split.checkFits(2047, narrow), undefined);
    assert.equal(split.checkFits(2048, narrow), 'EOVERFLOW');
  });

  it('programs only the global entry for an ENQCMD device and both entries otherwise', () => {
    const split = new PasidSplit(1024);
    assert.deepEqual(split.entriesToProgram(wide, 5, 1030), [{ index: 1030, range: 'global' }]);
    assert.deepEqual(split.entriesToProgram(vf, 5, 1030), [
      { index: 5, range: 'local' },
      { index: 1030, range: 'global' },
    ]);
    throwsErrno(() => split.entriesToProgram(vf, 1030, 1031), 'ERANGE');
    throwsErrno(() => split.entriesToProgram(vf, 0, 1031), 'ERANGE');
    throwsErrno(() => split.entriesToProgram(vf, 5, 6), 'ERANGE');
    throwsErrno(() => split.entriesToProgram({ name: 'small', maxPasids: 1030, enqcmd: false }, 5, 1030), 'EOVERFLOW');
  });
});
