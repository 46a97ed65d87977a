import { type KeyObject, randomBytes, sign } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignJWT } from 'jose';
import type { RsaKeyPool } from './rsa-pool.js';
import {
  type Account,
  bearerOf,
  closeServer,
  liveAccessToken,
  playTransportFault,
  readBody,
  type StandInContext,
  sendJson,
} from './state.js';

/** The IAM Service Account Credentials API methods the stand-in serves. */
export type IamMethod = 'generateAccessToken' | 'generateIdToken' | 'signJwt' | 'signBlob';
/** Every method the stand-in serves (others answer 404). */
export const IAM_METHODS: readonly IamMethod[] = [
  'generateAccessToken',
  'generateIdToken',
  'signJwt',
  'signBlob',
];

/**
 * A fault the IAM stand-in plays, for reliability tests. `status` answers in
 * Google's error shape (`message` and the canonical status name for the
 * code) unless `body` is given verbatim. `method` limits it to one method.
 */
export type IamFault = (
  | { kind: 'status'; status: number; message?: string; body?: string; retryAfterSeconds?: number }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'reset' }
) & { method?: IamMethod };

/** Requests that reached the IAM stand-in, in total and per method, whatever the answer. */
export interface IamRequestStats {
  total: number;
  generateAccessToken: number;
  generateIdToken: number;
  signJwt: number;
  signBlob: number;
}

/** The running IAM Credentials API stand-in. */
export interface IamServer {
  /** Base URL: requests go to `{url}/v1/projects/-/serviceAccounts/{email}:{method}`. */
  readonly url: string;
  readonly stats: IamRequestStats;
  /** Distinct TCP connections that carried requests (keep-alive reuses one). */
  readonly connections: number;
  injectFault(fault: IamFault, times?: number): void;
  /** A fixed delay before every answer (for benchmarks that subtract the round trip); 0 for none. */
  setLatency(ms: number): void;
  /** Clears faults (not the latency). */
  reset(): void;
  close(): Promise<void>;
}

const PATH = /^\/v1\/projects\/([^/]+)\/serviceAccounts\/([^/:]+):([A-Za-z]+)$/;
const DELEGATE = /^projects\/-\/serviceAccounts\/([^/]+)$/;
const SCOPE = /^(?:https:\/\/[\x21-\x2b\x2d-\x7e]+|openid|email|profile)$/;
const DURATION = /^(\d+)(?:\.(\d{1,9}))?s$/;
const IAM_SCOPES = new Set([
  'https://www.googleapis.com/auth/cloud-platform',
  'https://www.googleapis.com/auth/iam',
]);
/** `generateAccessToken`'s default and maximum `lifetime`, and the maximum for accounts in the lifetime-extension org policy. */
const MAX_LIFETIME = 3600;
const MAX_EXTENDED_LIFETIME = 12 * 3600;
const MAX_JWT_AHEAD = 12 * 3600;
const PERMISSION: Record<IamMethod, string> = {
  generateAccessToken: 'iam.serviceAccounts.getAccessToken',
  generateIdToken: 'iam.serviceAccounts.getOpenIdToken',
  signJwt: 'iam.serviceAccounts.signJwt',
  signBlob: 'iam.serviceAccounts.signBlob',
};
const FIELDS: Record<IamMethod, readonly string[]> = {
  generateAccessToken: ['delegates', 'scope', 'lifetime'],
  generateIdToken: ['delegates', 'audience', 'includeEmail', 'useEmailAzp', 'organizationNumberIncluded'],
  signJwt: ['delegates', 'payload'],
  signBlob: ['delegates', 'payload'],
};
/** google.rpc.Code names, for the error body Google sends with each HTTP status. */
const STATUS_NAME: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ABORTED',
  429: 'RESOURCE_EXHAUSTED',
  499: 'CANCELLED',
  500: 'INTERNAL',
  501: 'NOT_IMPLEMENTED',
  503: 'UNAVAILABLE',
  504: 'DEADLINE_EXCEEDED',
};
const UNAUTHENTICATED =
  'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.';

/** An error as Google's APIs answer it: `{"error": {"code", "message", "status", "details"?}}`. */
class GoogleApiError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details?: readonly unknown[],
  ) {
    super(message);
  }
  body(): unknown {
    return {
      error: {
        code: this.code,
        message: this.message,
        status: STATUS_NAME[this.code] ?? 'UNKNOWN',
        ...(this.details ? { details: this.details } : {}),
      },
    };
  }
}

const invalid = (message: string) => new GoogleApiError(400, message);
const notFound = (email: string) =>
  new GoogleApiError(404, `Not found; Gaia id not found for email ${email}`);
const denied = (permission: string, reason = 'IAM_PERMISSION_DENIED') =>
  new GoogleApiError(403, `Permission '${permission}' denied on resource (or it may not exist).`, [
    {
      '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
      reason,
      domain: 'iam.googleapis.com',
      metadata: { permission },
    },
  ]);

/**
 * The `kid` of an account's Google-managed signing key, assigned on first
 * use. The key itself is bound only when something is signed with it
 * ({@link systemKeyOf}).
 */
export function systemKeyId(account: Account): string {
  account.systemKeyId ??= randomBytes(20).toString('hex');
  return account.systemKeyId;
}

/** The account's Google-managed signing key, taken from the pool on first use; its public half joins the account's keys. */
export function systemKeyOf(
  account: Account,
  pool: RsaKeyPool,
): Promise<{ kid: string; privateKey: KeyObject }> {
  account.systemKey ??= (async () => {
    const kid = systemKeyId(account);
    const { privateKey, publicKey } = await pool.take(account.keyExpected === true);
    account.keyExpected = false;
    account.keys.set(kid, { key: publicKey, state: 'enabled' });
    return { kid, privateKey };
  })();
  return account.systemKey;
}

/**
 * Starts the IAM Service Account Credentials API stand-in on its own port:
 * `generateAccessToken`, `generateIdToken`, `signJwt` and `signBlob`, with
 * Google's checks (a live bearer from a metadata server, the token-creator
 * grant along the delegation chain, lifetime and `exp` bounds, strict
 * bodies) and Google's error shape.
 */
export async function startIamServer(
  ctx: StandInContext,
  options: { host?: string; port?: number; latencyMs?: number } = {},
): Promise<IamServer> {
  const stats: IamRequestStats = {
    total: 0,
    generateAccessToken: 0,
    generateIdToken: 0,
    signJwt: 0,
    signBlob: 0,
  };
  const faults: Array<{ fault: IamFault; remaining: number }> = [];
  const hanging = new Set<ServerResponse>();
  const sockets = new WeakSet<object>();
  let connections = 0;
  let latencyMs = options.latencyMs ?? 0;

  function takeFault(method: IamMethod | undefined): IamFault | undefined {
    const i = faults.findIndex((f) => f.fault.method === undefined || f.fault.method === method);
    if (i < 0) return undefined;
    const entry = faults[i]!;
    if (--entry.remaining <= 0) faults.splice(i, 1);
    return entry.fault;
  }

  function findAccount(id: string): Account | undefined {
    const direct = ctx.accounts.get(id) ?? ctx.accounts.get(id.toLowerCase());
    if (direct) return direct;
    for (const a of ctx.accounts.values()) if (a.clientId === id) return a;
    return undefined;
  }

  /** The caller's identity from `Authorization: Bearer`: a live token that a metadata server issued. */
  function authenticate(req: IncomingMessage): { email: string; scopes: string[] } {
    const info = liveAccessToken(ctx, bearerOf(req));
    if (info?.origin !== 'metadata') throw new GoogleApiError(401, UNAUTHENTICATED);
    return { email: info.email, scopes: info.scope.split(' ') };
  }

  function parseBody(method: IamMethod, text: string): Record<string, unknown> {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw invalid('Invalid JSON payload received. Unexpected token.');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw invalid('Invalid JSON payload received. Expected an object.');
    const body: Record<string, unknown> = {};
    for (const [raw, value] of Object.entries(parsed)) {
      // Google's JSON mapping takes a field's lowerCamelCase or its proto snake_case name.
      const name = raw.replace(/_([a-z])/g, (_, c: string) => c.toUpperCase());
      if (!FIELDS[method].includes(name))
        throw invalid(`Invalid JSON payload received. Unknown name "${raw}": Cannot find field.`);
      body[name] = value;
    }
    return body;
  }

  function delegatesOf(body: Record<string, unknown>): string[] {
    const d = body['delegates'];
    if (d === undefined || d === null) return [];
    if (!Array.isArray(d) || !d.every((x): x is string => typeof x === 'string'))
      throw invalid(`Invalid value at 'delegates' (type.googleapis.com/google.protobuf.ListValue)`);
    return d.map((name) => {
      const m = DELEGATE.exec(name);
      if (!m?.[1]) {
        throw invalid(
          `Invalid form of account ID ${name}. Should be [Gaia ID |Email |Unique ID |] of the account`,
        );
      }
      return decodeURIComponent(m[1]);
    });
  }

  /** The caller must be token creator on the first delegate, each delegate on the next, the last on the target. */
  function authorize(method: IamMethod, caller: string, delegates: string[], target: Account): void {
    const chain = [...delegates.map((e) => findAccount(e) ?? notFoundThrow(e)), target];
    let member = caller.toLowerCase();
    for (const account of chain) {
      if (!account.tokenCreators.has(member)) throw denied(PERMISSION[method]);
      member = account.email.toLowerCase();
    }
  }

  async function generateAccessToken(target: Account, body: Record<string, unknown>): Promise<unknown> {
    const scope = body['scope'];
    if (!Array.isArray(scope) || scope.length === 0) throw invalid('Scope required.');
    if (!scope.every((s): s is string => typeof s === 'string' && SCOPE.test(s)))
      throw invalid(`Invalid value at 'scope': ${JSON.stringify(scope)}`);
    let lifetime = MAX_LIFETIME;
    if (body['lifetime'] !== undefined) {
      const m = typeof body['lifetime'] === 'string' ? DURATION.exec(body['lifetime']) : null;
      if (!m) throw invalid(`Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration)`);
      const seconds = Number(m[1]) + Number(`0.${m[2] ?? '0'}`);
      // Google's messages, as measured against the real API (see README: 0s, 3601s and 43200s).
      if (seconds <= 0) throw invalid('Lifetime of access token must be larger then zero.');
      if (seconds > MAX_LIFETIME && !target.lifetimeExtension) {
        throw invalid(
          `Access tokens for service account ${target.email} can not have lifetimes of more than 1 hour. Use the Org Policy Constraint constraints/iam.allowServiceAccountCredentialLifetimeExtension to allow up to 12 hours.`,
        );
      }
      if (seconds > MAX_EXTENDED_LIFETIME) {
        throw invalid(
          `Access tokens for service account ${target.email} can not have lifetimes of more than 12 hours.`,
        );
      }
      lifetime = Math.floor(seconds);
    }
    const exp = Math.floor(ctx.now() / 1000) + lifetime;
    const accessToken = `ya29.c.${randomBytes(48).toString('base64url')}`;
    ctx.accessTokens.set(accessToken, {
      email: target.email,
      scope: scope.join(' '),
      clientId: target.clientId,
      exp,
      origin: 'iam',
    });
    ctx.onSecret(accessToken);
    return { accessToken, expireTime: new Date(exp * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z') };
  }

  async function signJwt(target: Account, body: Record<string, unknown>): Promise<unknown> {
    const payload = body['payload'];
    if (typeof payload !== 'string' || payload === '') throw invalid('JWT payload required.');
    let claims: unknown;
    try {
      claims = JSON.parse(payload);
    } catch {
      throw invalid('Invalid JWT payload: not a JSON object.');
    }
    if (typeof claims !== 'object' || claims === null || Array.isArray(claims))
      throw invalid('Invalid JWT payload: not a JSON object.');
    const t = Math.floor(ctx.now() / 1000);
    const set = { ...(claims as Record<string, unknown>) };
    // Google adds `exp` = now + 1 h when the claims have none; a given `exp`
    // must be an integer neither in the past nor more than 12 hours ahead.
    if (set['exp'] === undefined) set['exp'] = t + 3600;
    const exp = set['exp'];
    if (typeof exp !== 'number' || !Number.isInteger(exp))
      throw invalid('Invalid JWT payload: exp must be an integer timestamp.');
    if (exp < t) throw invalid('Invalid JWT payload: exp is in the past.');
    if (exp > t + MAX_JWT_AHEAD)
      throw invalid('Invalid JWT payload: exp is more than 12 hours in the future.');
    const key = await systemKeyOf(target, ctx.rsaKeys);
    const signedJwt = await new SignJWT(set)
      .setProtectedHeader({ alg: 'RS256', kid: key.kid, typ: 'JWT' })
      .sign(key.privateKey);
    ctx.onSecret(signedJwt);
    return { keyId: key.kid, signedJwt };
  }

  async function signBlob(target: Account, body: Record<string, unknown>): Promise<unknown> {
    const payload = body['payload'];
    if (typeof payload !== 'string' || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(payload))
      throw invalid(`Invalid value at 'payload' (TYPE_BYTES), Base64 decoding failed.`);
    const key = await systemKeyOf(target, ctx.rsaKeys);
    const signedBlob = sign('sha256', Buffer.from(payload, 'base64'), key.privateKey).toString('base64');
    return { keyId: key.kid, signedBlob };
  }

  async function generateIdToken(target: Account, body: Record<string, unknown>): Promise<unknown> {
    const audience = body['audience'];
    if (typeof audience !== 'string' || audience === '') throw invalid('Audience required.');
    for (const flag of ['includeEmail', 'useEmailAzp', 'organizationNumberIncluded']) {
      if (body[flag] !== undefined && typeof body[flag] !== 'boolean')
        throw invalid(`Invalid value at '${flag}' (TYPE_BOOL)`);
    }
    const iat = Math.floor(ctx.now() / 1000);
    const token = await ctx.signGoogle({
      iss: ctx.issuer,
      aud: audience,
      azp: body['useEmailAzp'] === true ? target.email : target.clientId,
      sub: target.clientId,
      iat,
      exp: iat + 3600,
      ...(body['includeEmail'] === true ? { email: target.email, email_verified: true } : {}),
    });
    return { token };
  }

  const run: Record<IamMethod, (t: Account, b: Record<string, unknown>) => Promise<unknown>> = {
    generateAccessToken,
    generateIdToken,
    signJwt,
    signBlob,
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!sockets.has(req.socket)) {
      sockets.add(req.socket);
      connections++;
    }
    const text = await readBody(req);
    const m = PATH.exec(new URL(req.url ?? '/', 'http://iam').pathname);
    const method = IAM_METHODS.find((x) => x === m?.[3]);
    stats.total++;
    if (method) stats[method]++;
    if (latencyMs > 0) await new Promise((r) => setTimeout(r, latencyMs));
    const fault = takeFault(method);
    if (fault) {
      switch (fault.kind) {
        case 'status': {
          const headers: Record<string, string> =
            fault.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(fault.retryAfterSeconds) };
          if (fault.body !== undefined) {
            res.writeHead(fault.status, { 'Content-Type': 'text/html; charset=UTF-8', ...headers });
            res.end(fault.body);
          } else {
            const message = fault.message ?? `The service is ${STATUS_NAME[fault.status] ?? 'failing'}.`;
            sendJson(res, fault.status, new GoogleApiError(fault.status, message).body(), headers);
          }
          return;
        }
        case 'delay':
        case 'hang':
        case 'reset':
          if (await playTransportFault(fault, req, res, hanging)) return;
          break;
      }
    }
    try {
      if (!m || !method || req.method !== 'POST') throw new GoogleApiError(404, 'Method not found.');
      const caller = authenticate(req);
      if (!caller.scopes.some((s) => IAM_SCOPES.has(s))) {
        throw new GoogleApiError(403, 'Request had insufficient authentication scopes.', [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'ACCESS_TOKEN_SCOPE_INSUFFICIENT',
            domain: 'googleapis.com',
            metadata: { service: 'iamcredentials.googleapis.com', method },
          },
        ]);
      }
      if (m[1] !== '-')
        throw invalid('The project must be the "-" wildcard: projects/-/serviceAccounts/{ACCOUNT}.');
      const body = parseBody(method, text);
      const delegates = delegatesOf(body);
      const email = decodeURIComponent(m[2]!);
      const target = findAccount(email) ?? notFoundThrow(email);
      authorize(method, caller.email, delegates, target);
      sendJson(res, 200, await run[method](target, body));
    } catch (err) {
      if (!(err instanceof GoogleApiError)) throw err;
      sendJson(
        res,
        err.code,
        err.body(),
        err.code === 401 ? { 'WWW-Authenticate': 'Bearer realm="https://accounts.google.com/"' } : {},
      );
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent) sendJson(res, 500, new GoogleApiError(500, 'Internal error.').body());
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  return {
    url: `http://${host}:${(server.address() as AddressInfo).port}`,
    stats,
    get connections() {
      return connections;
    },
    injectFault(fault, times = 1) {
      faults.push({ fault, remaining: times });
    },
    setLatency(ms) {
      latencyMs = ms;
    },
    reset() {
      faults.length = 0;
    },
    close: () => closeServer(server, hanging),
  };
}

function notFoundThrow(email: string): never {
  throw notFound(email);
}
