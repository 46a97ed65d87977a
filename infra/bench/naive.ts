/**
 * The bench's "naive broker": what a straightforward token service does
 * without single-flight. Each instance keeps tokens in a Map and mints when
 * the Map has none, so every request that arrives before the first mint
 * finishes mints too. Same key handling, signing and token endpoint client
 * as the broker; only the coordination is missing. Configured by
 * NAIVE_KEY_FILE, NAIVE_TOKEN_URL and NAIVE_SCOPE.
 */
import { readFile } from 'node:fs/promises';
import * as functions from '@google-cloud/functions-framework';
import { createTokenEndpoint } from '../../shared/adapters/token-endpoint.js';
import { ASSERTION_HEADER, accessTokenAssertionClaims } from '../../shared/jwt/claims.js';
import { importSigningKey, signJwt } from '../../shared/jwt/sign.js';
import { parseServiceAccountKey } from '../../shared/service-account-key.js';

const keyFile = process.env['NAIVE_KEY_FILE'] ?? '';
const tokenUrl = process.env['NAIVE_TOKEN_URL'] ?? '';
const scope = process.env['NAIVE_SCOPE'] ?? '';
const endpoint = createTokenEndpoint({ tokenUrl });
const cache = new Map<string, { token: string; expiresAt: number }>();

functions.http('naive', async (req, res) => {
  if (req.method !== 'POST') {
    res.status(405).json({ error: 'method_not_allowed' });
    return;
  }
  let cached = cache.get(scope);
  if (cached === undefined || cached.expiresAt - Date.now() < 300_000) {
    const key = parseServiceAccountKey(await readFile(keyFile));
    const claims = accessTokenAssertionClaims({
      issuer: key.clientEmail,
      scopes: [scope],
      tokenUrl,
      nowMs: Date.now(),
    });
    const assertion = await signJwt(ASSERTION_HEADER, claims, await importSigningKey(key.privateKey));
    const result = await endpoint.exchange(assertion, 'access_token');
    cached = { token: result.token, expiresAt: Date.now() + result.expiresIn * 1000 };
    cache.set(scope, cached);
  }
  res.json({ access_token: cached.token, expires_in: Math.floor((cached.expiresAt - Date.now()) / 1000) });
});
