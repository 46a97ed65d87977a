import { createHash, type KeyObject } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { CompiledBoundary } from './boundary.js';
import type { RsaKeyPool } from './rsa-pool.js';

/** Who minted an access token: the token endpoint, a metadata server, the IAM Credentials API, or STS (downscoped). */
export type TokenOrigin = 'oauth' | 'metadata' | 'iam' | 'sts';

/** What the stand-in remembers about an access token it issued (what `/tokeninfo` describes). */
export interface AccessTokenInfo {
  email: string;
  /** Space-separated scopes. */
  scope: string;
  /** The delegated user, for domain-wide delegation. */
  sub?: string;
  clientId: string;
  /** Seconds since the epoch. */
  exp: number;
  origin: TokenOrigin;
  /** Revoked (see `GoogleStandIn.revokeAccessToken`): refused everywhere from then on. */
  revoked?: boolean;
  /** For a downscoped token (origin `sts`): its Credential Access Boundary, and the token it was exchanged from. */
  boundary?: CompiledBoundary;
  sourceToken?: string;
}

/** A service account the stand-in knows: its public keys, and for a keyless one its system-managed key. */
export interface Account {
  email: string;
  /** The numeric unique ID, which is also the OAuth 2.0 client ID. */
  clientId: string;
  keys: Map<string, { key: KeyObject; state: 'enabled' | 'disabled' | 'deleted' }>;
  delegation: Set<string> | '*' | undefined;
  /** A keyless account whose key the pool was told to make ahead, not yet taken. */
  keyExpected?: boolean;
  /** The `kid` of its Google-managed key, assigned before the key exists. */
  systemKeyId?: string;
  /** The Google-managed key the IAM Credentials API signs with (`signJwt`, `signBlob`), made on first use. */
  systemKey?: Promise<{ kid: string; privateKey: KeyObject }>;
  /** Members (emails) that hold `roles/iam.serviceAccountTokenCreator` on this account. */
  tokenCreators: Set<string>;
  /**
   * Listed in the org policy `constraints/iam.allowServiceAccountCredentialLifetimeExtension`:
   * `generateAccessToken` takes a `lifetime` up to 12 h instead of 1 h.
   */
  lifetimeExtension?: boolean;
}

/** The state the OAuth server, the metadata servers and the IAM API share. */
export interface StandInContext {
  /** Milliseconds since the epoch. */
  now(): number;
  readonly issuer: string;
  readonly accounts: Map<string, Account>;
  readonly accessTokens: Map<string, AccessTokenInfo>;
  /** Signs claims with the stand-in's Google key (the one its JWKS serves): ID tokens. */
  signGoogle(claims: Record<string, unknown>): Promise<string>;
  /** Where Google-managed keys come from (made ahead in the background). */
  readonly rsaKeys: RsaKeyPool;
  /** Reports a token or signed JWT it issued (for leak scans). */
  onSecret(secret: string): void;
}

/** The stand-in's record of an access token that is live now (issued here, not expired, not revoked), or undefined. */
export function liveAccessToken(
  ctx: Pick<StandInContext, 'accessTokens' | 'now'>,
  token: string | undefined,
) {
  const info = token === undefined ? undefined : ctx.accessTokens.get(token);
  if (!info || info.revoked || info.exp <= Math.floor(ctx.now() / 1000)) return undefined;
  return info;
}

/** The bearer token of `Authorization: Bearer <token>`, if any. */
export function bearerOf(req: IncomingMessage): string | undefined {
  return /^Bearer ([\x21-\x7e]+)$/i.exec(req.headers.authorization ?? '')?.[1];
}

/**
 * Faults queued for the next requests: each entry plays `remaining` times,
 * on the requests its `only` accepts (all when absent).
 */
export class FaultQueue<F extends { only?: string }> {
  readonly #entries: Array<{ fault: F; remaining: number }> = [];

  push(fault: F, times = 1): void {
    this.#entries.push({ fault, remaining: times });
  }

  /** The next fault for a request of kind `kind`, consuming one play of it. */
  take(kind: string): F | undefined {
    const i = this.#entries.findIndex((e) => e.fault.only === undefined || e.fault.only === kind);
    if (i < 0) return undefined;
    const entry = this.#entries[i]!;
    if (--entry.remaining <= 0) this.#entries.splice(i, 1);
    return entry.fault;
  }

  clear(): void {
    this.#entries.length = 0;
  }
}

/** Google's numeric subject for an email that is not a registered account (stable, 15 hex digits as decimal). */
export function numericIdFor(email: string): string {
  return BigInt(`0x${createHash('sha256').update(email).digest('hex').slice(0, 15)}`).toString();
}

/** Sends a JSON body with `Cache-Control: no-store`. */
export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  res.writeHead(status, {
    'Content-Type': 'application/json; charset=utf-8',
    'Cache-Control': 'no-store',
    ...headers,
  });
  res.end(JSON.stringify(body));
}

/** Reads a request body as UTF-8 text. */
export function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * Plays the transport faults every stand-in plays the same way: a delay
 * (then the request goes on), a hang (kept open until it closes or the
 * stand-in stops) or a reset. Returns true when the request is finished with.
 */
export async function playTransportFault(
  fault: { kind: 'delay'; ms: number } | { kind: 'hang' } | { kind: 'reset' },
  req: IncomingMessage,
  res: ServerResponse,
  hanging: Set<ServerResponse>,
): Promise<boolean> {
  switch (fault.kind) {
    case 'delay':
      await new Promise((r) => setTimeout(r, fault.ms));
      return false;
    case 'hang':
      hanging.add(res);
      res.on('close', () => hanging.delete(res));
      return true;
    case 'reset':
      req.socket.destroy();
      return true;
  }
}

/** Stops a stand-in's server at once: the responses a hang fault holds are destroyed, kept-alive connections closed. */
export function closeServer(server: Server, hanging: Set<ServerResponse>): Promise<void> {
  return new Promise<void>((resolve) => {
    for (const res of hanging) res.destroy();
    server.closeAllConnections();
    server.close(() => resolve());
  });
}
