import { parseJsonObject } from '../json-object.js';
import { issuerUrlProblem } from '../policy/issuers.js';
import { type HttpClient, type HttpResponse, sharedHttpClient } from './http.js';

/**
 * OpenID Connect Discovery 1.0 for a trusted issuer (docs/contract.md,
 * "Verification"): where its key set is. Sending the request and checking
 * the answer are separate functions, so the check runs on recorded answers.
 */

/** The largest discovery document read (GitHub's is about 1.5 KB). */
const MAX_DISCOVERY_BYTES = 64 * 1024;

/** `{issuer}/.well-known/openid-configuration`, a terminating `/` of the issuer removed first (Discovery §4). */
export function discoveryUrl(issuer: string): string {
  return `${issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
}

/**
 * The `jwks_uri` of a discovery answer. Throws an Error (its text names what
 * is wrong, and never echoes the body) unless the answer is a 200 JSON
 * object whose `issuer` is exactly the configured one and whose `jwks_uri`
 * is https (http on loopback only with `allowLoopback`).
 */
export function processDiscovery(res: HttpResponse, issuer: string, allowLoopback: boolean): string {
  if (res.status !== 200) throw new Error(`the discovery document answered HTTP ${res.status}`);
  const doc = parseJsonObject(res.body);
  if (doc === undefined) throw new Error('the discovery document is not a JSON object');
  // Discovery §4.3: the issuer in the document must be identical to the one it was asked of.
  if (doc['issuer'] !== issuer) throw new Error(`the discovery document names another issuer than ${issuer}`);
  const jwksUri = doc['jwks_uri'];
  const problem = issuerUrlProblem(jwksUri, allowLoopback);
  if (problem !== undefined) throw new Error(`the discovery document's jwks_uri ${problem}`);
  return jwksUri as string;
}

/**
 * The key set's URL of `issuer`, read from its discovery document and kept
 * for `maxAgeMs`; read again when older. Called by the key set's fetch,
 * which single-flights and cools down every attempt.
 */
export function createJwksUriResolver(options: {
  issuer: string;
  allowLoopback: boolean;
  http?: HttpClient;
  timeoutMs?: number;
  maxAgeMs?: number;
  now?: () => number;
}): () => Promise<string> {
  const now = options.now ?? Date.now;
  const maxAgeMs = options.maxAgeMs ?? 60 * 60_000;
  let known: { uri: string; at: number } | undefined;
  return async () => {
    if (known !== undefined && now() - known.at < maxAgeMs) return known.uri;
    const res = await (options.http ?? sharedHttpClient).request(discoveryUrl(options.issuer), {
      headers: { accept: 'application/json' },
      timeoutMs: options.timeoutMs ?? 3000,
      maxBytes: MAX_DISCOVERY_BYTES,
    });
    const uri = processDiscovery(res, options.issuer, options.allowLoopback);
    known = { uri, at: now() };
    return uri;
  };
}
