import { createPublicKey, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  compactVerify,
  createLocalJWKSet,
  decodeProtectedHeader,
  exportJWK,
  generateKeyPair,
  type JWK,
  jwtVerify,
  SignJWT,
} from 'jose';
import { type GitHubActionsIssuer, startGitHubActionsIssuer } from '../oidc/github.js';
import { type KubernetesIssuer, startKubernetesIssuer as startKubernetes } from '../oidc/kubernetes.js';
import {
  type IamFault,
  type IamRequestStats,
  type IamServer,
  startIamServer,
  systemKeyId,
  systemKeyOf,
} from './iam.js';
import { type MetadataServer, type MetadataServerOptions, startMetadataServer } from './metadata.js';
import { RsaKeyPool } from './rsa-pool.js';
import {
  type AccessTokenInfo,
  type Account,
  bearerOf,
  closeServer,
  liveAccessToken,
  numericIdFor,
  playTransportFault,
  readBody,
  type StandInContext,
  sendJson as send,
} from './state.js';
import { type StorageServer, startStorageServer } from './storage.js';
import { type StsServer, startStsServer } from './sts.js';

export type { GitHubActionsIssuer } from '../oidc/github.js';
export type { KubernetesIssuer } from '../oidc/kubernetes.js';
export type { AccessBoundary } from './boundary.js';
export type { IamFault, IamRequestStats } from './iam.js';
export type { MetadataServer, MetadataServerOptions } from './metadata.js';
export type { StorageServer } from './storage.js';
export type { StsServer } from './sts.js';

/** A fault the stand-in plays on `POST /token`, for reliability tests. */
export type Fault =
  | { kind: 'status'; status: number; retryAfterSeconds?: number; body?: string }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'reset' }
  | { kind: 'error'; error: string; description: string };

export interface GoogleStandInOptions {
  port?: number;
  host?: string;
  accessTokenLifetimeSeconds?: number;
  /** Milliseconds since the epoch. */
  now?: () => number;
  /** How far off `iat`/`exp` may be from this server's clock (Google tolerates a few minutes). */
  clockSkewToleranceSeconds?: number;
  issuer?: string;
  /** Called with every token it issues (for leak scans). */
  onSecret?: (secret: string) => void;
  /**
   * Assertion audiences accepted besides this server's own token URL: the
   * bench adds Google's real one for clients (google-auth-library) that
   * always sign for it and are pointed here by a rewritten URL.
   */
  extraAudiences?: readonly string[];
  /** Port of the IAM Credentials API listener; default a random free port. */
  iamPort?: number;
  /** A fixed delay before every IAM answer, in milliseconds (see {@link GoogleStandIn.setIamLatency}). */
  iamLatencyMs?: number;
  /** Port of the STS listener; default a random free port. */
  stsPort?: number;
  /** Port of the Cloud Storage JSON API listener; default a random free port. */
  storagePort?: number;
}

/** A keyless service account's public facts (it has no key file: IAM signs for it). */
export interface KeylessAccount {
  email: string;
  /** The numeric unique ID, also the OAuth 2.0 client ID (what the Admin console authorises for delegation). */
  clientId: string;
  /** The `kid` of its Google-managed signing key (what `signJwt` puts in the header). */
  keyId: string;
}

/** The running stand-in. */
export interface GoogleStandIn {
  readonly url: string;
  readonly tokenUrl: string;
  readonly jwksUrl: string;
  readonly tokeninfoUrl: string;
  readonly issuer: string;
  /**
   * Base URL of the IAM Service Account Credentials API stand-in (its own
   * port): `POST {iamUrl}/v1/projects/-/serviceAccounts/{email}:{method}`.
   * The value for `BROKER_IAM_CREDENTIALS_URL`.
   */
  readonly iamUrl: string;
  /**
   * The Security Token Service stand-in (its own port; `sts.url` stands for
   * `https://sts.googleapis.com`): `POST {sts.url}/v1/token` exchanges a live
   * access token issued here for a downscoped one with a Credential Access
   * Boundary. Counters, issued tokens and faults are on the object.
   */
  readonly sts: StsServer;
  /**
   * The Cloud Storage JSON API stand-in (its own port; `storage.url` is the
   * `apiEndpoint`), enforcing bucket IAM, scopes and downscoped tokens'
   * boundaries over objects held in memory.
   */
  readonly storage: StorageServer;
  /**
   * `tokenConnections`: distinct TCP connections that carried token requests (keep-alive reuses one).
   * `iamRequests`: IAM requests per method and in total, whatever the answer; `iamConnections` as for tokens.
   */
  readonly stats: {
    tokenRequests: number;
    tokensIssued: number;
    readonly tokenConnections: number;
    readonly iamRequests: IamRequestStats;
    readonly iamConnections: number;
  };
  registerServiceAccount(account: {
    email: string;
    clientId: string;
    keyId: string;
    publicKeyPem: string;
  }): void;
  disableKey(keyId: string): void;
  deleteKey(keyId: string): void;
  addUser(email: string): void;
  allowDelegation(email: string, scopes: string[] | '*'): void;
  issueIdToken(options: {
    email: string;
    audience: string;
    emailVerified?: boolean;
    lifetimeSeconds?: number;
    iat?: number;
    issuer?: string;
    extraClaims?: Record<string, unknown>;
  }): Promise<string>;
  rotateSigningKey(): Promise<void>;
  injectFault(fault: Fault, times?: number): void;
  /**
   * Registers a keyless service account: no key file exists; it gets a
   * Google-managed key (its `kid` fixed now, the RSA key made ahead in the background) that IAM's `signJwt` signs with and that `/token`
   * accepts assertions from (delegation rules as for keyed accounts, see
   * {@link GoogleStandIn.allowDelegation}). Nobody may impersonate it until
   * {@link GoogleStandIn.grantTokenCreator}.
   */
  registerKeylessAccount(email: string, options?: { clientId?: string }): KeylessAccount;
  /**
   * Grants `member` (an email, or `serviceAccount:EMAIL`) `roles/iam.serviceAccountTokenCreator`
   * on `account` (a registered account, keyed or keyless).
   */
  grantTokenCreator(account: string, member: string): void;
  /** Takes the grant back. */
  revokeTokenCreator(account: string, member: string): void;
  /**
   * Lists the account in the org policy
   * `constraints/iam.allowServiceAccountCredentialLifetimeExtension`: its
   * `generateAccessToken` then takes a `lifetime` up to 43200s (12 h).
   */
  allowLifetimeExtension(email: string): void;
  /**
   * Revokes an access token the stand-in issued (as `POST /revoke` does):
   * STS, Storage, IAM, tokeninfo and userinfo refuse it from now on. Tokens
   * STS already derived from it are not revoked with it.
   */
  revokeAccessToken(token: string): void;
  /**
   * Starts a metadata server on its own port for an instance running as
   * `options.email`; several can run at once (the broker's, a caller's).
   * Its access tokens are the only bearers IAM accepts; its ID tokens are
   * signed with the key the JWKS serves. Closed with the stand-in.
   */
  startMetadataServer(options: MetadataServerOptions): Promise<MetadataServer>;
  /**
   * Starts an OIDC issuer like GitHub Actions' on its own port (discovery,
   * JWKS, the job's ID token URL); closed with the stand-in. See `infra/oidc/github.ts`.
   */
  startGitHubIssuer(options?: Parameters<typeof startGitHubActionsIssuer>[0]): Promise<GitHubActionsIssuer>;
  /**
   * Starts an OIDC issuer like a Kubernetes cluster's service-account issuer on
   * its own port (discovery, JWKS, projected token files); closed with the stand-in.
   */
  startKubernetesIssuer(options?: Parameters<typeof startKubernetes>[0]): Promise<KubernetesIssuer>;
  /** Queues `fault` for the next `times` IAM requests (`Infinity` for all), optionally of one method only. */
  injectIamFault(fault: IamFault, times?: number): void;
  /** Fixes IAM's latency (a delay before every answer, 0 for none): benches subtract a known round trip. */
  setIamLatency(ms: number): void;
  /** The JWKS of an account's keys, as Google serves at `/service_accounts/v1/jwk/{email}`. */
  serviceAccountJwksUrl(email: string): string;
  /** Clears queued faults (token endpoint, IAM, STS, Storage, metadata servers, issuers). */
  reset(): void;
  setAccessTokenLifetime(seconds: number): void;
  close(): Promise<void>;
}

const GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const TIME_ERROR =
  'Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.';
const SCOPE = /^(?:https:\/\/[\x21-\x2b\x2d-\x7e]+|openid|email|profile)$/;

class OAuthError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
    readonly status = 400,
  ) {
    super(description);
  }
}

/**
 * A local stand-in for Google's OAuth 2.0 server: `POST /token` checks
 * jwt-bearer assertions by the rules of Google's server-to-server guide
 * (with its error codes), mints access and ID tokens; `/oauth2/v3/certs`
 * serves its JWKS; `/tokeninfo` describes tokens; `/local/idtoken` issues
 * caller ID tokens (stand-in only). Faults can be injected on `/token`.
 * Beside it, on their own ports and sharing its state: the IAM Service
 * Account Credentials API (`iamUrl`) and any number of metadata servers
 * ({@link GoogleStandIn.startMetadataServer}), for keyless accounts; STS
 * (`sts`) and the Cloud Storage JSON API (`storage`), for downscoped tokens;
 * and, on request, OIDC issuers like GitHub Actions' and a Kubernetes
 * cluster's ({@link GoogleStandIn.startGitHubIssuer},
 * {@link GoogleStandIn.startKubernetesIssuer}).
 */
export async function startGoogleStandIn(options: GoogleStandInOptions = {}): Promise<GoogleStandIn> {
  const now = options.now ?? Date.now;
  const tolerance = options.clockSkewToleranceSeconds ?? 300;
  let lifetime = options.accessTokenLifetimeSeconds ?? 3599;
  const accounts = new Map<string, Account>();
  const users = new Set<string>();
  const accessTokens = new Map<string, AccessTokenInfo>();
  const faults: Fault[] = [];
  const hanging = new Set<ServerResponse>();
  const tokenSockets = new WeakSet<object>();
  let tokenConnections = 0;
  let iam: IamServer | undefined;
  const metadataServers = new Set<MetadataServer>();
  const issuers = new Set<GitHubActionsIssuer | KubernetesIssuer>();
  /** An issuer's options: on this stand-in's host unless given, its secrets reported here too. */
  const issuerOptions = <O extends { host?: string; onSecret?: (secret: string) => void }>(o: O) => ({
    host,
    ...o,
    onSecret: (secret: string) => {
      options.onSecret?.(secret);
      o.onSecret?.(secret);
    },
  });
  const stats = {
    tokenRequests: 0,
    tokensIssued: 0,
    get tokenConnections() {
      return tokenConnections;
    },
    get iamRequests() {
      return iam!.stats;
    },
    get iamConnections() {
      return iam?.connections ?? 0;
    },
  };
  const signingKeys: Array<{
    kid: string;
    privateKey: Awaited<ReturnType<typeof generateKeyPair>>['privateKey'];
    jwk: JWK;
  }> = [];

  const rotateSigningKey = async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256');
    const kid = randomBytes(20).toString('hex');
    signingKeys.push({
      kid,
      privateKey,
      jwk: { ...(await exportJWK(publicKey)), kid, alg: 'RS256', use: 'sig' },
    });
  };
  await rotateSigningKey();
  const jwks = () => ({ keys: signingKeys.map((k) => k.jwk) });

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) send(res, 500, { error: 'internal_failure', error_description: String(err) });
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  const url = `http://${host}:${(server.address() as AddressInfo).port}`;
  const issuer = options.issuer ?? url;
  const tokenUrl = `${url}/token`;

  async function sign(claims: Record<string, unknown>): Promise<string> {
    const current = signingKeys[signingKeys.length - 1]!;
    const jwt = await new SignJWT(claims)
      .setProtectedHeader({ alg: 'RS256', kid: current.kid, typ: 'JWT' })
      .sign(current.privateKey);
    options.onSecret?.(jwt);
    return jwt;
  }

  const context: StandInContext = {
    now,
    issuer,
    accounts,
    accessTokens,
    signGoogle: sign,
    rsaKeys: new RsaKeyPool(),
    onSecret: (secret) => options.onSecret?.(secret),
  };
  iam = await startIamServer(context, {
    host,
    ...(options.iamPort === undefined ? {} : { port: options.iamPort }),
    ...(options.iamLatencyMs === undefined ? {} : { latencyMs: options.iamLatencyMs }),
  });
  const sts = await startStsServer(context, {
    host,
    ...(options.stsPort === undefined ? {} : { port: options.stsPort }),
  });
  const storage = await startStorageServer(context, {
    host,
    ...(options.storagePort === undefined ? {} : { port: options.storagePort }),
  });

  async function issueIdToken(o: Parameters<GoogleStandIn['issueIdToken']>[0]): Promise<string> {
    const iat = o.iat ?? Math.floor(now() / 1000);
    const sub = numericIdFor(o.email);
    return sign({
      iss: o.issuer ?? issuer,
      aud: o.audience,
      azp: sub,
      sub,
      email: o.email,
      email_verified: o.emailVerified ?? true,
      iat,
      exp: iat + (o.lifetimeSeconds ?? 3600),
      ...o.extraClaims,
    });
  }

  async function exchange(form: URLSearchParams): Promise<Record<string, unknown>> {
    if (form.get('grant_type') !== GRANT)
      throw new OAuthError('unsupported_grant_type', `Invalid grant_type: ${form.get('grant_type') ?? ''}`);
    const assertion = form.get('assertion') ?? '';
    const badSignature = new OAuthError('invalid_grant', 'Invalid JWT Signature.');
    // base64url without padding and without whitespace (docs/protocol.md).
    if (!/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(assertion)) throw badSignature;
    let header: ReturnType<typeof decodeProtectedHeader>;
    let claims: Record<string, unknown>;
    try {
      header = decodeProtectedHeader(assertion);
      claims = JSON.parse(Buffer.from(assertion.split('.')[1]!, 'base64url').toString('utf8')) as Record<
        string,
        unknown
      >;
    } catch {
      throw badSignature;
    }
    if (header.alg !== 'RS256') throw badSignature;
    const account = typeof claims['iss'] === 'string' ? accounts.get(claims['iss']) : undefined;
    if (!account) throw new OAuthError('invalid_client', 'The OAuth client was not found.', 401);
    const candidates = [...account.keys.entries()].filter(
      ([kid]) => header.kid === undefined || kid === header.kid,
    );
    let verified: { state: string } | undefined;
    for (const [, k] of candidates) {
      try {
        await compactVerify(assertion, k.key, { algorithms: ['RS256'] });
        verified = k;
        break;
      } catch {}
    }
    if (!verified || verified.state === 'deleted') throw badSignature;
    if (verified.state === 'disabled')
      throw new OAuthError('disabled_client', 'The OAuth client was disabled.');
    if (claims['aud'] !== tokenUrl && !(options.extraAudiences ?? []).includes(String(claims['aud'])))
      throw new OAuthError('invalid_grant', 'Invalid JWT: Failed audience check.');
    const iat = claims['iat'];
    const exp = claims['exp'];
    const t = now() / 1000;
    if (
      typeof iat !== 'number' ||
      typeof exp !== 'number' ||
      exp <= iat ||
      exp - iat > 3900 ||
      iat > t + tolerance ||
      exp < t - tolerance
    ) {
      throw new OAuthError('invalid_grant', TIME_ERROR);
    }
    const targetAudience = claims['target_audience'];
    if (typeof targetAudience === 'string') {
      stats.tokensIssued++;
      const issued = Math.floor(t);
      return {
        id_token: await sign({
          iss: issuer,
          aud: targetAudience,
          azp: account.clientId,
          sub: account.clientId,
          email: account.email,
          email_verified: true,
          iat: issued,
          exp: issued + 3600,
        }),
      };
    }
    const scope = claims['scope'];
    const invalidScope = new OAuthError(
      'invalid_scope',
      'Invalid OAuth scope or ID token audience provided.',
    );
    if (typeof scope !== 'string' || scope.trim() === '' || scope.includes(',')) throw invalidScope;
    const scopes = scope.split(' ');
    if (!scopes.every((s) => SCOPE.test(s))) throw invalidScope;
    const sub = claims['sub'];
    if (sub !== undefined) {
      if (typeof sub !== 'string' || !users.has(sub.toLowerCase()))
        throw new OAuthError('invalid_grant', 'Not a valid email.');
      const d = account.delegation;
      if (d === undefined || (d !== '*' && !scopes.every((s) => d.has(s)))) {
        throw new OAuthError(
          'unauthorized_client',
          'Client is unauthorized to retrieve access tokens using this method, or client not authorized for any of the scopes requested.',
        );
      }
    }
    const accessToken = `ya29.${randomBytes(40).toString('base64url')}`;
    options.onSecret?.(accessToken);
    accessTokens.set(accessToken, {
      email: account.email,
      scope,
      clientId: account.clientId,
      exp: Math.floor(t) + lifetime,
      origin: 'oauth',
      ...(typeof sub === 'string' ? { sub: sub.toLowerCase() } : {}),
    });
    stats.tokensIssued++;
    return { access_token: accessToken, token_type: 'Bearer', expires_in: lifetime, scope };
  }

  async function tokeninfo(params: URLSearchParams): Promise<[number, unknown]> {
    const invalid: [number, unknown] = [400, { error: 'invalid_token', error_description: 'Invalid Value' }];
    const access = params.get('access_token');
    const t = Math.floor(now() / 1000);
    if (access) {
      const info = liveAccessToken(context, access);
      if (!info) return invalid;
      return [
        200,
        {
          azp: info.clientId,
          aud: info.clientId,
          scope: info.scope,
          exp: String(info.exp),
          expires_in: String(info.exp - t),
          email: info.email,
          email_verified: 'true',
          access_type: 'online',
          ...(info.sub ? { sub: info.sub } : {}),
        },
      ];
    }
    const idToken = params.get('id_token');
    if (idToken) {
      try {
        const { payload } = await jwtVerify(idToken, createLocalJWKSet(jwks()), {
          currentDate: new Date(now()),
        });
        return [200, payload];
      } catch {
        return invalid;
      }
    }
    return invalid;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', url);
    const body = await readBody(req);
    if (u.pathname === '/token' && req.method === 'POST') {
      stats.tokenRequests++;
      if (!tokenSockets.has(req.socket)) {
        tokenSockets.add(req.socket);
        tokenConnections++;
      }
      const fault = faults.shift();
      if (fault) {
        switch (fault.kind) {
          case 'status':
            res.writeHead(fault.status, {
              'Content-Type': fault.body === undefined ? 'application/json' : 'text/html',
              ...(fault.retryAfterSeconds === undefined
                ? {}
                : { 'Retry-After': String(fault.retryAfterSeconds) }),
            });
            res.end(fault.body ?? JSON.stringify({ error: 'internal_failure' }));
            return;
          case 'delay':
          case 'hang':
          case 'reset':
            if (await playTransportFault(fault, req, res, hanging)) return;
            break;
          case 'error':
            send(res, 400, { error: fault.error, error_description: fault.description });
            return;
        }
      }
      try {
        send(res, 200, await exchange(new URLSearchParams(body)));
      } catch (err) {
        if (!(err instanceof OAuthError)) throw err;
        send(res, err.status, { error: err.error, error_description: err.description });
      }
      return;
    }
    if (u.pathname === '/oauth2/v3/certs' && req.method === 'GET') return send(res, 200, jwks());
    const saJwk = /^\/service_accounts\/v1\/jwk\/([^/]+)$/.exec(u.pathname);
    if (saJwk && req.method === 'GET') {
      const account = accounts.get(decodeURIComponent(saJwk[1]!));
      if (!account) return send(res, 404, { error: 'not_found' });
      // A keyless account's Google-managed key is made on first use; Google always lists it.
      if (account.systemKeyId !== undefined) await systemKeyOf(account, context.rsaKeys);
      const keys = [];
      for (const [kid, k] of account.keys)
        if (k.state !== 'deleted') keys.push({ ...(await exportJWK(k.key)), kid, alg: 'RS256', use: 'sig' });
      return send(res, 200, { keys });
    }
    if (u.pathname === '/oauth2/v3/userinfo') {
      // A stand-in for a Google API: it wants a valid access token in `Authorization: Bearer`.
      const info = liveAccessToken(context, bearerOf(req));
      if (!info)
        return send(res, 401, { error: 'invalid_request', error_description: 'Invalid Credentials' });
      return send(res, 200, {
        sub: info.sub ?? info.clientId,
        email: info.sub ?? info.email,
        email_verified: true,
      });
    }
    if (u.pathname === '/revoke' && req.method === 'POST') {
      // Google's revocation endpoint: the token in the form (or the query); unknown ones are a 400.
      const token = new URLSearchParams(body).get('token') ?? u.searchParams.get('token') ?? '';
      const info = liveAccessToken(context, token);
      if (!info)
        return send(res, 400, { error: 'invalid_token', error_description: 'Token expired or revoked' });
      info.revoked = true;
      return send(res, 200, {});
    }
    if (u.pathname === '/tokeninfo') {
      const params = req.method === 'POST' ? new URLSearchParams(body) : u.searchParams;
      const [status, json] = await tokeninfo(params);
      return send(res, status, json);
    }
    if (u.pathname === '/local/idtoken' && req.method === 'POST') {
      const { email, audience } = JSON.parse(body || '{}') as { email?: unknown; audience?: unknown };
      if (typeof email !== 'string' || typeof audience !== 'string')
        return send(res, 400, { error: 'email and audience are required' });
      return send(res, 200, { id_token: await issueIdToken({ email, audience }) });
    }
    if (u.pathname === '/__control/faults' && req.method === 'POST') {
      const { fault, times } = JSON.parse(body) as { fault: Fault; times?: number };
      standIn.injectFault(fault, times);
      return send(res, 200, { queued: faults.length });
    }
    if (u.pathname === '/__control/iam-faults' && req.method === 'POST') {
      const { fault, times } = JSON.parse(body) as { fault: IamFault; times?: number };
      standIn.injectIamFault(fault, times);
      return send(res, 200, {});
    }
    if (u.pathname === '/__control/reset' && req.method === 'POST') {
      standIn.reset();
      return send(res, 200, {});
    }
    if (u.pathname === '/__control/stats') return send(res, 200, stats);
    send(res, 404, { error: 'not_found' });
  }

  const standIn: GoogleStandIn = {
    url,
    tokenUrl,
    jwksUrl: `${url}/oauth2/v3/certs`,
    tokeninfoUrl: `${url}/tokeninfo`,
    iamUrl: iam.url,
    sts,
    storage,
    issuer,
    stats,
    registerServiceAccount(a) {
      const account = accounts.get(a.email) ?? {
        email: a.email,
        clientId: a.clientId,
        keys: new Map(),
        delegation: undefined,
        tokenCreators: new Set<string>(),
      };
      account.keys.set(a.keyId, { key: createPublicKey(a.publicKeyPem), state: 'enabled' });
      accounts.set(a.email, account);
    },
    disableKey(keyId) {
      for (const a of accounts.values()) {
        const k = a.keys.get(keyId);
        if (k) k.state = 'disabled';
      }
    },
    deleteKey(keyId) {
      for (const a of accounts.values()) {
        const k = a.keys.get(keyId);
        if (k) k.state = 'deleted';
      }
    },
    addUser(email) {
      users.add(email.toLowerCase());
    },
    allowDelegation(email, scopes) {
      const a = accounts.get(email);
      if (!a) throw new Error(`unknown service account ${email}`);
      a.delegation = scopes === '*' ? '*' : new Set(scopes);
    },
    issueIdToken,
    rotateSigningKey,
    injectFault(fault, times = 1) {
      for (let i = 0; i < times; i++) faults.push(fault);
    },
    registerKeylessAccount(email, o = {}) {
      if (accounts.has(email)) throw new Error(`service account ${email} is already registered`);
      const account: Account = {
        email,
        clientId: o.clientId ?? `1${numericIdFor(`${email}#client`).padStart(20, '0').slice(-20)}`,
        keys: new Map(),
        delegation: undefined,
        tokenCreators: new Set(),
        keyExpected: true,
      };
      context.rsaKeys.expect();
      accounts.set(email, account);
      return { email, clientId: account.clientId, keyId: systemKeyId(account) };
    },
    grantTokenCreator(account, member) {
      const a = accounts.get(account);
      if (!a) throw new Error(`unknown service account ${account}`);
      a.tokenCreators.add(member.replace(/^serviceAccount:/, '').toLowerCase());
    },
    revokeTokenCreator(account, member) {
      accounts.get(account)?.tokenCreators.delete(member.replace(/^serviceAccount:/, '').toLowerCase());
    },
    allowLifetimeExtension(email) {
      const a = accounts.get(email);
      if (!a) throw new Error(`unknown service account ${email}`);
      a.lifetimeExtension = true;
    },
    revokeAccessToken(token) {
      const info = accessTokens.get(token);
      if (!info) throw new Error('not an access token the stand-in issued');
      info.revoked = true;
    },
    async startMetadataServer(o) {
      const m = await startMetadataServer(context, { ...o, host: o.host ?? host });
      metadataServers.add(m);
      return m;
    },
    async startGitHubIssuer(o = {}) {
      const issuer = await startGitHubActionsIssuer(issuerOptions(o));
      issuers.add(issuer);
      return issuer;
    },
    async startKubernetesIssuer(o = {}) {
      const issuer = await startKubernetes(issuerOptions(o));
      issuers.add(issuer);
      return issuer;
    },
    injectIamFault(fault, times) {
      iam!.injectFault(fault, times);
    },
    setIamLatency(ms) {
      iam!.setLatency(ms);
    },
    serviceAccountJwksUrl: (email) => `${url}/service_accounts/v1/jwk/${encodeURIComponent(email)}`,
    reset() {
      faults.length = 0;
      iam!.reset();
      sts.reset();
      storage.reset();
      for (const m of metadataServers) m.reset();
      for (const i of issuers) i.reset();
    },
    setAccessTokenLifetime(seconds) {
      lifetime = seconds;
    },
    close: async () => {
      await Promise.all([...metadataServers, ...issuers].map((m) => m.close()));
      await Promise.all([iam!.close(), sts.close(), storage.close()]);
      await closeServer(server, hanging);
    },
  };
  return standIn;
}
