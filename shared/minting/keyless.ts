import type { IamCredentials } from '../adapters/iam-credentials.js';
import type { TokenEndpoint } from '../adapters/token-endpoint.js';
import { epochSeconds, MAX_ASSERTION_LIFETIME_SECONDS, selfSignedClaims } from '../jwt/claims.js';
import type { KeylessAccount } from '../policy/types.js';
import { mintByJwtBearer } from './jwt-bearer.js';
import type { Minter } from './minter.js';

export interface KeylessMinterDeps {
  iam: IamCredentials;
  tokenEndpoint: TokenEndpoint;
  /** Google's token endpoint; the `aud` of a delegated assertion. */
  tokenUrl: string;
  now: () => number;
}

/**
 * Mints with no key anywhere, through Google's IAM Credentials API
 * (docs/contract.md, "Keyless service accounts"):
 * - `token`: `generateAccessToken`; with a `subject` (domain-wide
 *   delegation), `signJwt` over the seed's claims and then the jwt-bearer
 *   exchange, since IAM cannot mint delegated tokens itself;
 * - `jwt`: `signJwt` over the self-signed claims (IAM's header and `kid`);
 * - `idtoken`: `generateIdToken`.
 */
export function createKeylessMinter(deps: KeylessMinterDeps): Minter<KeylessAccount> {
  return {
    async mint(account, req) {
      const { email, delegates } = account;
      const nowMs = deps.now();
      switch (req.kind) {
        case 'token': {
          if (req.subject === undefined) {
            // IAM's `lifetime`: the request's `lifetimeSeconds`, which the service checked against the account.
            const minted = await deps.iam.generateAccessToken(
              email,
              req.scopes,
              delegates,
              req.lifetimeSeconds,
            );
            return { ...minted, scope: req.scopes.join(' ') };
          }
          return mintByJwtBearer({
            issuer: email,
            req,
            tokenUrl: deps.tokenUrl,
            tokenEndpoint: deps.tokenEndpoint,
            nowMs,
            sign: (claims) => deps.iam.signJwt(email, claims, delegates),
          });
        }
        case 'jwt': {
          const target = req.audience !== undefined ? { audience: req.audience } : { scopes: req.scopes };
          const token = await deps.iam.signJwt(email, selfSignedClaims({ email, target, nowMs }), delegates);
          return { token, expiresAt: (epochSeconds(nowMs) + MAX_ASSERTION_LIFETIME_SECONDS) * 1000 };
        }
        case 'idtoken':
          return deps.iam.generateIdToken(email, req.audience, delegates);
      }
    },
  };
}
