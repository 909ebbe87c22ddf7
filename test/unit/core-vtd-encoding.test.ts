import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { U64 } from '../../src/core/u64';
import {
  capabilitiesOf,
  decodeCap,
  decodeEcap,
  domainCount,
  encodeCap,
  encodeEcap,
  faultRecordingCount,
  faultRecordingOffset,
  iotlbRegisterOffset,
  maxGuestAddressWidth,
  pasidCount,
  secondLevelLargePages,
  supportedAgaws,
} from '../../src/core/vtd/cap';
import {
  atsInvalidationAddress,
  atsInvalidationRange,
  decodeDescriptor,
  decodePageRequest,
  DescType,
  encodeDescriptor,
  encodePageRequest,
} from '../../src/core/vtd/descriptors';
import { FAULT_REASONS, linuxFaultReason } from '../../src/core/vtd/fault-reasons';
import {
  CONTEXT_LEGACY,
  CONTEXT_SCALABLE,
  decodeEntry,
  encodeEntry,
  FL_PTE,
  getField,
  type Layout,
  PASID_DIR_ENTRY,
  PASID_ENTRY,
  reservedViolations,
  ROOT_LEGACY,
  ROOT_SCALABLE,
  SL_PTE,
} from '../../src/core/vtd/structures';

const LAYOUTS: Layout[] = [ROOT_LEGACY, ROOT_SCALABLE, CONTEXT_LEGACY, CONTEXT_SCALABLE, PASID_DIR_ENTRY, PASID_ENTRY, SL_PTE, FL_PTE];

/** Random field values that fit each field (addresses page-aligned, below 2^52). */
function fieldValues(layout: Layout): fc.Arbitrary<Record<string, number>> {
  const entries = layout.fields.map((f) => {
    const width = f.msb - f.lsb + 1;
    const arb = f.kind === 'address' ? fc.integer({ min: 0, max: 2 ** 40 - 1 }).map((p) => p * 4096) : fc.integer({ min: 0, max: Math.min(2 ** width, 2 ** 31) - 1 });
    return [f.name, arb] as const;
  });
  return fc.record(Object.fromEntries(entries));
}

describe('VT-d encodings', () => {
  for (const layout of LAYOUTS) {
    it(`${layout.name}: every field encodes and decodes to the same value, and sets no reserved bit`, () => {
      fc.assert(
        fc.property(fieldValues(layout), (values) => {
          const words = encodeEntry(layout, values);
          assert.equal(words.length, layout.words * 2);
          for (const f of layout.fields) assert.equal(getField(words, f), values[f.name], f.name);
          assert.deepEqual(reservedViolations(layout, words), []);
          const decoded = decodeEntry(layout, words);
          for (const f of layout.fields) {
            const v = values[f.name]!;
            assert.equal(decoded[f.name], f.kind === 'flag' ? v === 1 : f.kind === 'address' ? '0x' + v.toString(16) : v);
          }
        }),
        { numRuns: 200 },
      );
    });
  }

  it('encodes Linux-style entries bit-exactly (a second-level PASID entry as intel_pasid_setup_second_level writes it)', () => {
    const words = encodeEntry(PASID_ENTRY, { P: true, AW: 2, PGTT: 2, SLPTPTR: 0x1_2345_6000, DID: 0x42, PWSNP: true });
    // val[0] = SLPTPTR | PGTT << 6 | AW << 2 | P; val[1] = DID | PWSNP << 23
    assert.deepEqual([words[0], words[1], words[2], words[3]], [0x2345_6000 | (2 << 6) | (2 << 2) | 1, 0x1, 0x42 | (1 << 23), 0]);
    assert.deepEqual(reservedViolations(PASID_ENTRY, [...words.slice(0, 6), 1, 0, ...words.slice(8)]), ['qw3[63:0]']);
  });

  it('round-trips every invalidation descriptor type, in 128-bit and 256-bit form', () => {
    const arbs: Record<number, fc.Arbitrary<Record<string, number>>> = {
      [DescType.CONTEXT_CACHE]: fc.record({ G: fc.integer({ min: 1, max: 3 }), DID: fc.nat(0xffff), SID: fc.nat(0xffff), FM: fc.nat(3) }),
      [DescType.IOTLB]: fc.record({ G: fc.integer({ min: 1, max: 3 }), DW: fc.nat(1), DR: fc.nat(1), DID: fc.nat(0xffff), AM: fc.nat(0x3f), IH: fc.nat(1), ADDR: fc.nat(2 ** 40 - 1).map((p) => p * 4096) }),
      [DescType.DEVICE_TLB]: fc.record({ PFSID_LO: fc.nat(0xf), QDEP: fc.nat(0x1f), SID: fc.nat(0xffff), PFSID_HI: fc.nat(0xfff), S: fc.nat(1), ADDR: fc.nat(2 ** 40 - 1).map((p) => p * 4096) }),
      [DescType.IEC]: fc.record({ G: fc.nat(1), IM: fc.nat(0x1f), IIDX: fc.nat(0xffff) }),
      [DescType.WAIT]: fc.record({ IF: fc.nat(1), SW: fc.nat(1), FN: fc.nat(1), PD: fc.nat(1), STATUS: fc.nat(2 ** 31), ADDR: fc.nat(2 ** 40).map((a) => a * 4) }),
      [DescType.PASID_IOTLB]: fc.record({ G: fc.integer({ min: 2, max: 3 }), DID: fc.nat(0xffff), PASID: fc.nat(0xfffff), AM: fc.nat(0x3f), IH: fc.nat(1), ADDR: fc.nat(2 ** 40 - 1).map((p) => p * 4096) }),
      [DescType.PASID_CACHE]: fc.record({ G: fc.constantFrom(0, 1, 3), DID: fc.nat(0xffff), PASID: fc.nat(0xfffff) }),
      [DescType.PASID_DEVICE_TLB]: fc.record({ QDEP: fc.nat(0x1f), PFSID_LO: fc.nat(0xf), SID: fc.nat(0xffff), PASID: fc.nat(0xfffff), PFSID_HI: fc.nat(0xfff), G: fc.nat(1), S: fc.nat(1), ADDR: fc.nat(2 ** 40 - 1).map((p) => p * 4096) }),
    };
    for (const [type, arb] of Object.entries(arbs)) {
      fc.assert(
        fc.property(arb, fc.constantFrom(2, 4) as fc.Arbitrary<2 | 4>, (fields, words) => {
          const w = encodeDescriptor(Number(type), fields, words);
          const d = decodeDescriptor(w, words);
          assert.equal(d.invalid, undefined, `${d.name}: ${d.invalid}`);
          assert.equal(d.type, Number(type));
          for (const [k, v] of Object.entries(fields)) {
            const got = d.fields[k]! * (k === 'ADDR' ? (Number(type) === DescType.WAIT ? 4 : 4096) : 1);
            assert.equal(got, v, `${d.name}.${k}`);
          }
        }),
        { numRuns: 100 },
      );
    }
  });

  it('matches the Linux encodings of real descriptors bit for bit', () => {
    // qi_flush_iotlb(iommu, did=5, addr=0x12345000, size_order=3, DMA_TLB_PSI_FLUSH): G=3, DR|DW, IH=0
    const psi = encodeDescriptor(DescType.IOTLB, { G: 3, DR: 1, DW: 1, DID: 5, ADDR: 0x1234_5000, AM: 3, IH: 0 }, 2);
    assert.deepEqual(psi, [0x2 | (3 << 4) | (1 << 6) | (1 << 7) | (5 << 16), 0, 0x1234_5000 | 3, 0]);
    // PASID-cache PSI for PASID 0x123, DID 7: QI_PC_PASID_SEL = 1, type 7
    const pc = encodeDescriptor(DescType.PASID_CACHE, { G: 1, DID: 7, PASID: 0x123 });
    assert.deepEqual(pc.slice(0, 2), [0x7 | (1 << 4) | (7 << 16), 0x123]);
    // A Page Group Response: PP, RC=Success, RID 0x6a08, PASID 2, LPIG, PRGI 0x1ff
    const pgr = encodeDescriptor(DescType.PAGE_GROUP_RESPONSE, { PP: 1, RC: 0, RID: 0x6a08, PASID: 2, LPIG: 1, PRGI: 0x1ff });
    assert.deepEqual(pgr.slice(0, 4), [(0x9 | (1 << 4) | (0x6a08 << 16)) >>> 0, 2, (4 | (0x1ff << 3)) >>> 0, 0]);
  });

  it('rejects unknown types, reserved granularities and reserved bits', () => {
    assert.match(decodeDescriptor([0xa, 0, 0, 0], 2).invalid!, /unknown descriptor type 0xa/);
    assert.match(decodeDescriptor([0x0, 0, 0, 0], 2).invalid!, /unknown descriptor type 0x0/);
    assert.match(decodeDescriptor(encodeDescriptor(DescType.IOTLB, { G: 1 }).map((v, i) => (i === 0 ? v & ~0x30 : v)), 4).invalid!, /reserved granularity 0/);
    assert.match(decodeDescriptor([0x2 | (1 << 4) | (1 << 8), 0, 0, 0], 2).invalid!, /reserved bits set in qw0/);
    assert.match(decodeDescriptor([0x2 | (1 << 4), 0, 0, 0, 0, 1, 0, 0], 4).invalid!, /reserved bits set in qw2/);
    // VT-d rev 4.0 removed the private data of page group responses (Linux 621b7e54f288): qw2 is reserved.
    assert.match(decodeDescriptor([0x9 | (1 << 4), 0, 0, 0, 5, 0, 0, 0], 4).invalid!, /reserved bits set in qw2/);
  });

  it('encodes device-TLB invalidation sizes the ATS way, and decodes them back', () => {
    for (const pages of [1, 2, 4, 16, 512]) {
      const base = 0x4000_0000;
      const { addr, s } = atsInvalidationAddress(base + 0x1000 * (pages > 1 ? 1 : 0), pages);
      assert.deepEqual(atsInvalidationRange(addr, s), { base, size: pages * 4096 });
    }
    // Linux: qi_flush_dev_iotlb with mask 1 sets bit 12 clear, S = 1: 8 KiB.
    assert.deepEqual(atsInvalidationRange(0x10_0000, 1), { base: 0x10_0000, size: 0x2000 });
  });

  it('round-trips page request descriptors', () => {
    fc.assert(
      fc.property(
        fc.record({
          rid: fc.nat(0xffff),
          pasid: fc.option(fc.nat(0xfffff), { nil: undefined }),
          address: fc.nat(2 ** 40 - 1).map((p) => p * 4096),
          read: fc.boolean(),
          write: fc.boolean(),
          exec: fc.boolean(),
          priv: fc.boolean(),
          lastInGroup: fc.boolean(),
          prgIndex: fc.nat(0x1ff),
        }),
        (r) => {
          const req = r.pasid === undefined ? (({ pasid: _p, ...rest }) => rest)(r) : r;
          const d = decodePageRequest(encodePageRequest(req));
          assert.deepEqual({ ...d, type: undefined }, { ...req, type: undefined });
          assert.equal(d.type, 1);
        },
      ),
    );
  });

  describe('CAP/ECAP', () => {
    // Boot lines from real machines: `DMAR: dmarN: reg_base_addr ... ver M:m cap <cap> ecap <ecap>`.
    const REAL = [
      { what: 'Sapphire Rapids server (ver 6:0)', cap: '9ed008c40780466', ecap: '3ee9e86f050df', domains: 65536, mgaw: 57, agaws: [48], nfr: 1, smts: 1, flts: 1, slts: 1, nest: 1, pss: 19, pasid: 0, cm: 0, fro: 0x400, iro: 0x500 },
      { what: 'client chipset unit (ver 1:0)', cap: 'd2008c40660462', ecap: 'f050da', domains: 256, mgaw: 39, agaws: [48], nfr: 1, smts: 0, flts: 0, slts: 0, nest: 0, pss: 0, pasid: 0, cm: 0, fro: 0x400, iro: 0x500 },
      { what: 'Skylake-SP server (ver 1:0)', cap: '8d2078c106f0466', ecap: 'f020df', domains: 65536, mgaw: 48, agaws: [48], nfr: 8, smts: 0, flts: 0, slts: 0, nest: 0, pss: 0, pasid: 0, cm: 0, fro: 0x100, iro: 0x200 },
      { what: 'Tiger Lake graphics unit (ver 4:0)', cap: '1c0000c40660462', ecap: '29a00f0505e', domains: 256, mgaw: 39, agaws: [48], nfr: 1, smts: 0, flts: 0, slts: 0, nest: 0, pss: 19, pasid: 0, cm: 0, fro: 0x400, iro: 0x500 },
    ];
    for (const m of REAL) {
      it(`decodes the ${m.what} boot line exactly and re-encodes it unchanged`, () => {
        const cap = decodeCap(U64.fromHex(m.cap)!);
        const ecap = decodeEcap(U64.fromHex(m.ecap)!);
        assert.equal(encodeCap(cap).toHex(1), m.cap);
        assert.equal(encodeEcap(ecap).toHex(1), m.ecap);
        assert.equal(domainCount(cap), m.domains);
        assert.equal(maxGuestAddressWidth(cap), m.mgaw);
        assert.deepEqual(supportedAgaws(cap), m.agaws);
        assert.equal(faultRecordingCount(cap), m.nfr);
        assert.equal(faultRecordingOffset(cap), m.fro);
        assert.equal(iotlbRegisterOffset(ecap), m.iro);
        assert.deepEqual([ecap.smts, ecap.flts, ecap.slts, ecap.nest, ecap.pss, ecap.pasid, cap.cm], [m.smts, m.flts, m.slts, m.nest, m.pss, m.pasid, m.cm]);
      });
    }

    it('builds CAP/ECAP from a description and decodes it back', () => {
      const { cap, ecap } = capabilitiesOf({ cachingMode: true, agaws: [39, 48], mgaw: 48, faultRecordingRegisters: 4, pasidBits: 16, secondLevelLargePages: ['2M'], firstLevel5Level: true });
      const c = decodeCap(cap);
      const e = decodeEcap(ecap);
      assert.equal(c.cm, 1);
      assert.deepEqual(supportedAgaws(c), [39, 48]);
      assert.equal(faultRecordingCount(c), 4);
      assert.deepEqual(secondLevelLargePages(c), ['2M']);
      assert.equal(c.fl5lp, 1);
      assert.equal(pasidCount(e), 2 ** 16);
      assert.equal(e.smts, 1);
    });
  });

  it('names every fault reason as Linux does, with "Unknown" in the gaps and beyond 0x90', () => {
    assert.deepEqual(linuxFaultReason(0x06), { text: 'PTE Read access is not set', type: 'dma' });
    assert.deepEqual(linuxFaultReason(0x25), { text: 'Blocked a compatibility format interrupt request', type: 'interrupt-remap' });
    assert.deepEqual(linuxFaultReason(0x71), { text: 'SM: Present bit in first-level paging entry is clear', type: 'dma' });
    assert.deepEqual(linuxFaultReason(0x33), { text: 'Unknown', type: 'dma' });
    assert.deepEqual(linuxFaultReason(0x0e), { text: 'Unknown', type: 'unknown' });
    assert.deepEqual(linuxFaultReason(0x91), { text: 'Unknown', type: 'unknown' });
    for (const r of FAULT_REASONS.values()) assert.ok(r.meaning.length > 10 && r.check.length > 10, `0x${r.code.toString(16)} is explained`);
  });
});
