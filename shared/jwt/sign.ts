import { CompactSign, importPKCS8 } from 'jose';
import { BrokerError } from '../errors.js';
import type { JwtClaims, JwtHeader } from './claims.js';

/** A private key imported once, ready to sign RS256 JWTs. */
export type SigningKey = Awaited<ReturnType<typeof importPKCS8>>;

const encoder = new TextEncoder();

/**
 * Imports a PKCS#8 PEM private key for RS256. Do it once per key version and
 * keep the result: parsing the PEM costs far more than a signature. Throws
 * BrokerError `upstream_rejected` (`invalid_key`) without echoing the key.
 */
export async function importSigningKey(pkcs8Pem: string): Promise<SigningKey> {
  try {
    return await importPKCS8(pkcs8Pem, 'RS256');
  } catch (err) {
    throw new BrokerError(
      'upstream_rejected',
      'The service-account key for this account is not a usable RSA private key. Store the JSON key file that Google issued, unchanged.',
      { upstreamError: 'invalid_key', cause: err instanceof Error ? new Error(err.name) : undefined },
    );
  }
}

/**
 * Signs a compact JWS: `base64url(header).base64url(claims).base64url(sig)`,
 * RSASSA-PKCS1-v1_5 with SHA-256, no padding, no newlines (docs/protocol.md).
 */
export async function signJwt(header: JwtHeader, claims: JwtClaims, key: SigningKey): Promise<string> {
  return new CompactSign(encoder.encode(JSON.stringify(claims))).setProtectedHeader({ ...header }).sign(key);
}
