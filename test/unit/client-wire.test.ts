import { describe, expect, it } from 'vitest';
import { isWireErrorCode } from '../../packages/client/src/errors.js';
import { ERROR_CODES, TOKEN_EXCHANGE_ERROR_CODES, WIRE_ERROR_CODES } from '../../packages/wire/wire.js';
import { HTTP_STATUS } from '../../shared/errors.js';

describe('the wire contract', () => {
  it("lists exactly the server's error codes, plus the token exchange's own", () => {
    // The server answers every wire code, the token exchange's included, and no other.
    expect([...WIRE_ERROR_CODES].sort()).toEqual(Object.keys(HTTP_STATUS).sort());
    for (const code of TOKEN_EXCHANGE_ERROR_CODES) expect(HTTP_STATUS[code]).toBe(400);
    expect(TOKEN_EXCHANGE_ERROR_CODES).toEqual(['unsupported_grant_type', 'invalid_grant', 'invalid_target']);
    expect(new Set(WIRE_ERROR_CODES).size).toBe(ERROR_CODES.length + TOKEN_EXCHANGE_ERROR_CODES.length);
  });

  it('lets the client tell a broker code from anything else', () => {
    for (const code of WIRE_ERROR_CODES) expect(isWireErrorCode(code)).toBe(true);
    for (const other of ['http_403', 'network_error', 'toString', '', 403, undefined, null])
      expect(isWireErrorCode(other)).toBe(false);
  });
});
