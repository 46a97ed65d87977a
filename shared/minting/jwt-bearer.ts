import type { TokenEndpoint } from '../adapters/token-endpoint.js';
import type { Token } from '../cache/types.js';
import { accessTokenAssertionClaims, type JwtClaims } from '../jwt/claims.js';
import type { TokenRequest } from '../request.js';

/**
 * An access token through the jwt-bearer exchange (docs/protocol.md, "The
 * exchange"): the assertion's claims for `req` (with `sub` for domain-wide
 * delegation), signed by `sign` (the account's key, or IAM's `signJwt` for a
 * keyless account), then exchanged at the token endpoint.
 */
export async function mintByJwtBearer(input: {
  issuer: string;
  req: TokenRequest;
  tokenUrl: string;
  tokenEndpoint: TokenEndpoint;
  nowMs: number;
  sign: (claims: JwtClaims) => Promise<string>;
}): Promise<Token> {
  const { req, nowMs } = input;
  const claims = accessTokenAssertionClaims({
    issuer: input.issuer,
    scopes: req.scopes,
    subject: req.subject,
    tokenUrl: input.tokenUrl,
    nowMs,
  });
  const result = await input.tokenEndpoint.exchange(await input.sign(claims), 'access_token');
  return {
    token: result.token,
    expiresAt: nowMs + result.expiresIn * 1000,
    scope: result.scope ?? req.scopes.join(' '),
  };
}
