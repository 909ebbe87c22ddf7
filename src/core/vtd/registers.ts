/** VT-d register offsets from the DRHD register base (VT-d spec chapter 11; Linux iommu.h). */
export const Reg = {
  VER: 0x00,
  CAP: 0x08,
  ECAP: 0x10,
  GCMD: 0x18,
  GSTS: 0x1c,
  RTADDR: 0x20,
  CCMD: 0x28,
  FSTS: 0x34,
  FECTL: 0x38,
  FEDATA: 0x3c,
  FEADDR: 0x40,
  FEUADDR: 0x44,
  AFLOG: 0x58,
  PMEN: 0x64,
  PLMBASE: 0x68,
  PLMLIMIT: 0x6c,
  PHMBASE: 0x70,
  PHMLIMIT: 0x78,
  IQH: 0x80,
  IQT: 0x88,
  IQA: 0x90,
  ICS: 0x9c,
  IECTL: 0xa0,
  IEDATA: 0xa4,
  IEADDR: 0xa8,
  IEUADDR: 0xac,
  IQER: 0xb0,
  IRTA: 0xb8,
  PQH: 0xc0,
  PQT: 0xc8,
  PQA: 0xd0,
  PRS: 0xdc,
  PECTL: 0xe0,
  PEDATA: 0xe4,
  PEADDR: 0xe8,
  PEUADDR: 0xec,
  MTRRCAP: 0x100,
  MTRRDEF: 0x108,
} as const;

export type RegName = keyof typeof Reg;

/** Which registers are 64-bit (the rest are 32-bit). */
export const REG64: ReadonlySet<RegName> = new Set<RegName>([
  'CAP', 'ECAP', 'RTADDR', 'CCMD', 'AFLOG', 'PHMBASE', 'PHMLIMIT', 'IQH', 'IQT', 'IQA', 'IQER', 'IRTA', 'PQH', 'PQT', 'PQA',
  'MTRRCAP', 'MTRRDEF',
]);

export const GCMD = { TE: 31, SRTP: 30, SFL: 29, EAFL: 28, WBF: 27, QIE: 26, IRE: 25, SIRTP: 24, CFI: 23 } as const;
/** GSTS mirrors GCMD bit for bit: TES 31, RTPS 30, FLS 29, AFLS 28, WBFS 27, QIES 26, IRES 25, IRTPS 24, CFIS 23. */
export const GSTS = { TES: 31, RTPS: 30, FLS: 29, AFLS: 28, WBFS: 27, QIES: 26, IRES: 25, IRTPS: 24, CFIS: 23 } as const;

export const FSTS = { PFO: 0, PPF: 1, AFO: 2, APF: 3, IQE: 4, ICE: 5, ITE: 6, PRO: 7 } as const;
export const FECTL = { IM: 31, IP: 30 } as const;
export const ICS = { IWC: 0 } as const;
export const PRS = { PPR: 0, PRO: 1 } as const;

/** RTADDR.TTM [11:10]: 00 legacy, 01 scalable mode. */
export const RTADDR_TTM_LEGACY = 0;
export const RTADDR_TTM_SCALABLE = 1;
