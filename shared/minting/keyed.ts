import type { TokenEndpoint } from '../adapters/token-endpoint.js';
import type { Token } from '../cache/types.js';
import {
  ASSERTION_HEADER,
  epochSeconds,
  idTokenAssertionClaims,
  MAX_ASSERTION_LIFETIME_SECONDS,
  selfSignedClaims,
  selfSignedHeader,
} from '../jwt/claims.js';
import { signJwt } from '../jwt/sign.js';
import type { KeyStore, LoadedKey } from '../key-store.js';
import type { KeyedAccount } from '../policy/types.js';
import type { MintRequest } from '../request.js';
import { isKeyRejected } from '../upstream-errors.js';
import { mintByJwtBearer } from './jwt-bearer.js';
import type { Minter } from './minter.js';

export interface KeyedMinterDeps {
  keys: KeyStore;
  tokenEndpoint: TokenEndpoint;
  /** Google's token endpoint; also the assertion's `aud`. */
  tokenUrl: string;
  now: () => number;
}

/**
 * Mints with the account's own key (docs/protocol.md): an RS256 assertion
 * and the jwt-bearer exchange for access and ID tokens, or a self-signed
 * JWT. When Google says the key was deleted or disabled, the secret is read
 * again once and the mint retried (key rotation).
 */
export function createKeyedMinter(deps: KeyedMinterDeps): Minter<KeyedAccount> {
  async function sign(req: MintRequest, loaded: LoadedKey): Promise<Token> {
    const nowMs = deps.now();
    const { key, signingKey } = loaded;
    const issuer = key.clientEmail;
    switch (req.kind) {
      case 'token':
        return mintByJwtBearer({
          issuer,
          req,
          tokenUrl: deps.tokenUrl,
          tokenEndpoint: deps.tokenEndpoint,
          nowMs,
          sign: (claims) => signJwt(ASSERTION_HEADER, claims, signingKey),
        });
      case 'idtoken': {
        const claims = idTokenAssertionClaims({
          issuer,
          audience: req.audience,
          tokenUrl: deps.tokenUrl,
          nowMs,
        });
        const assertion = await signJwt(ASSERTION_HEADER, claims, signingKey);
        const result = await deps.tokenEndpoint.exchange(assertion, 'id_token');
        return { token: result.token, expiresAt: nowMs + result.expiresIn * 1000 };
      }
      case 'jwt': {
        const target = req.audience !== undefined ? { audience: req.audience } : { scopes: req.scopes };
        const claims = selfSignedClaims({ email: issuer, target, nowMs });
        const token = await signJwt(selfSignedHeader(key), claims, signingKey);
        return { token, expiresAt: (epochSeconds(nowMs) + MAX_ASSERTION_LIFETIME_SECONDS) * 1000 };
      }
    }
  }

  return {
    async mint(account, req) {
      try {
        return await sign(req, await deps.keys.get(account.key, account.email));
      } catch (err) {
        if (!isKeyRejected(err)) throw err;
        // The key was rotated or deleted: read the secret again and try once more.
        deps.keys.invalidate(account.key);
        return sign(req, await deps.keys.get(account.key, account.email));
      }
    },
  };
}
