import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { crc32c as standInCrc32c } from '../../infra/secret-manager/crc32c.js';
import { crc32c as brokerCrc32c } from '../../shared/crc32c.js';

// RFC 3720 appendix B.4 (iSCSI CRC-32C examples) and the CRC catalogue's check value.
const VECTORS: Array<[string, Uint8Array, number]> = [
  ['32 bytes of zeros', new Uint8Array(32), 0x8a9136aa],
  ['32 bytes of 0xff', new Uint8Array(32).fill(0xff), 0x62a8ab43],
  ['32 bytes incrementing 0..31', Uint8Array.from({ length: 32 }, (_, i) => i), 0x46dd794e],
  ['32 bytes decrementing 31..0', Uint8Array.from({ length: 32 }, (_, i) => 31 - i), 0x113fdb5c],
  ['"123456789"', new TextEncoder().encode('123456789'), 0xe3069283],
  ['empty', new Uint8Array(0), 0],
];

describe.each([
  ['stand-in (infra/secret-manager/crc32c.ts)', standInCrc32c],
  ['broker (shared/crc32c.ts)', brokerCrc32c],
])('CRC-32C: %s', (_, crc32c) => {
  it.each(VECTORS)('%s', (_name, data, expected) => {
    expect(crc32c(data)).toBe(expected);
  });

  it('checks an unaligned view the same as a copy of its bytes', () => {
    const buf = Uint8Array.from({ length: 40 }, (_, i) => i - 3);
    const view = buf.subarray(3, 35);
    expect(crc32c(view)).toBe(0x46dd794e);
  });
});

describe('CRC-32C: the two implementations agree', () => {
  it('on every length from 0 to 70 and on 64 KiB of random bytes', () => {
    const data = randomBytes(65_536);
    for (let n = 0; n <= 70; n++) {
      const slice = data.subarray(5, 5 + n);
      expect(standInCrc32c(slice), `length ${n}`).toBe(brokerCrc32c(slice));
    }
    expect(standInCrc32c(data)).toBe(brokerCrc32c(data));
  });
});
