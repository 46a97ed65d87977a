import { canonicalEmail } from './email.js';
import { BrokerError } from './errors.js';

/** The fields of a Google service-account key file that the broker uses. */
export interface ServiceAccountKey {
  readonly type: 'service_account';
  readonly projectId: string;
  readonly privateKeyId: string;
  /** PKCS#8 PEM. Never log, echo or put it in an error. */
  readonly privateKey: string;
  readonly clientEmail: string;
  readonly clientId: string;
  readonly tokenUri: string | undefined;
}

const PEM = /^-----BEGIN PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PRIVATE KEY-----\r?\n?$/;
const KEY_ID = /^[0-9a-f]{40}$|^[A-Za-z0-9_-]{1,128}$/;

/**
 * Parses and validates a service-account key file (docs/protocol.md). Throws
 * BrokerError `upstream_rejected` with `upstreamError: 'invalid_key'`; the
 * message names the bad field and never holds key material.
 */
export function parseServiceAccountKey(data: Uint8Array | string): ServiceAccountKey {
  let raw: unknown;
  try {
    raw = JSON.parse(
      typeof data === 'string' ? data : new TextDecoder('utf-8', { fatal: true }).decode(data),
    );
  } catch {
    // The parser's message can quote the input, which is key material: drop it.
    throw invalidKey('the secret is not valid JSON');
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
    throw invalidKey('the secret is not a JSON object');
  const obj = raw as Record<string, unknown>;
  const problems: string[] = [];
  const text = (field: string): string => {
    const v = obj[field];
    if (typeof v !== 'string' || v.length === 0) {
      problems.push(`"${field}" is missing or not a string`);
      return '';
    }
    return v;
  };
  if (obj['type'] !== 'service_account') problems.push('"type" must be "service_account"');
  const projectId = text('project_id');
  const privateKeyId = text('private_key_id');
  if (privateKeyId && !KEY_ID.test(privateKeyId)) problems.push('"private_key_id" is not a key id');
  const privateKey = text('private_key');
  if (privateKey && !PEM.test(privateKey)) problems.push('"private_key" is not a PKCS#8 PEM private key');
  const clientEmailRaw = text('client_email');
  const clientEmail = clientEmailRaw ? canonicalEmail(clientEmailRaw) : undefined;
  if (clientEmailRaw && clientEmail === undefined) problems.push('"client_email" is not a valid email');
  const clientId = text('client_id');
  const tokenUri = obj['token_uri'];
  if (tokenUri !== undefined && typeof tokenUri !== 'string') problems.push('"token_uri" is not a string');
  if (problems.length > 0 || clientEmail === undefined) throw invalidKey(problems.join('; '));
  return {
    type: 'service_account',
    projectId,
    privateKeyId,
    privateKey,
    clientEmail,
    clientId,
    tokenUri: typeof tokenUri === 'string' ? tokenUri : undefined,
  };
}

function invalidKey(detail: string): BrokerError {
  return new BrokerError(
    'upstream_rejected',
    `The service-account key for this account is malformed (${detail}). Store the JSON key file that Google issued, unchanged.`,
    { upstreamError: 'invalid_key' },
  );
}
