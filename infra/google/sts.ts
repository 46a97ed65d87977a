import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AccessBoundary, BoundaryError, canonicalJson, compileBoundary } from './boundary.js';
import {
  closeServer,
  FaultQueue,
  liveAccessToken,
  playTransportFault,
  readBody,
  type StandInContext,
  sendJson,
} from './state.js';

const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** Subject token types STS knows; only `access_token` (downscoping) is served by the stand-in. */
const FEDERATED_TOKEN_TYPES = [
  'urn:ietf:params:oauth:token-type:jwt',
  'urn:ietf:params:oauth:token-type:id_token',
  'urn:ietf:params:aws:token-type:aws4_request',
  'urn:ietf:params:oauth:token-type:saml2',
  'urn:ietf:params:oauth:token-type:mtls',
];

/**
 * A fault the STS stand-in plays on `POST /v1/token`. `status` answers in
 * STS's OAuth error form, `{"error","error_description"}` (defaults by
 * status), unless `body` is given verbatim (sent as `text/html`).
 */
export type StsFault =
  | {
      kind: 'status';
      status: number;
      error?: string;
      description?: string;
      body?: string;
      retryAfterSeconds?: number;
    }
  | { kind: 'delay'; ms: number }
  | { kind: 'hang' }
  | { kind: 'reset' };

/** A downscoped token STS issued. */
export interface IssuedDownscopedToken {
  token: string;
  /** The service account (or user) of the source token. */
  email: string;
  sourceToken: string;
  boundary: AccessBoundary;
  /** {@link StsServer.boundaryKey} of the boundary. */
  boundaryKey: string;
  /** Seconds since the epoch: the source token's expiry. */
  exp: number;
}

/** What the STS stand-in counted. */
export interface StsStats {
  /** Every request that arrived, whatever the answer. */
  requests: number;
  /** Downscoped tokens issued. */
  exchanges: number;
  /** Requests answered with an error (faults included). */
  refused: number;
  /** Requests that carried an `Authorization` header (Google's reference: do not send one). */
  withAuthorizationHeader: number;
}

/** The running STS stand-in. */
export interface StsServer {
  /** Base URL, standing for `https://sts.googleapis.com`. */
  readonly url: string;
  /** `{url}/v1/token`. */
  readonly tokenUrl: string;
  readonly stats: StsStats;
  /** Every downscoped token issued, oldest first. */
  readonly issued: readonly IssuedDownscopedToken[];
  /** Downscoped tokens issued from this source token. */
  exchangesForSource(sourceToken: string): number;
  /** Downscoped tokens issued with this boundary (`{accessBoundaryRules: [...]}` or its key). */
  exchangesForBoundary(boundary: AccessBoundary | string): number;
  /** The key per-boundary counters use: the boundary's JSON with object keys sorted. */
  boundaryKey(boundary: AccessBoundary): string;
  injectFault(fault: StsFault, times?: number): void;
  /** Clears faults (not counters). */
  reset(): void;
  close(): Promise<void>;
}

const DEFAULT_ERROR: Record<number, string> = {
  400: 'invalid_request',
  401: 'invalid_client',
  403: 'access_denied',
  429: 'rate_limit_exceeded',
  500: 'server_error',
  503: 'temporarily_unavailable',
};

class StsError extends Error {
  constructor(
    readonly error: string,
    readonly description: string,
    readonly status = 400,
  ) {
    super(description);
  }
}

/** Reads the request as STS does: a form (what Google's clients send) or the JSON of the REST reference (camelCase or snake_case names). */
function readParams(req: IncomingMessage, text: string): Map<string, string> {
  const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
  const params = new Map<string, string>();
  if (type === 'application/json') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new StsError('invalid_request', 'Invalid JSON payload received.');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new StsError('invalid_request', 'Invalid JSON payload received. Expected an object.');
    for (const [k, v] of Object.entries(parsed)) {
      if (typeof v !== 'string') throw new StsError('invalid_request', `Invalid value for "${k}".`);
      params.set(
        k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`),
        v,
      );
    }
    return params;
  }
  if (type !== 'application/x-www-form-urlencoded')
    throw new StsError('invalid_request', 'The request must be application/x-www-form-urlencoded.');
  for (const [k, v] of new URLSearchParams(text)) params.set(k, v);
  return params;
}

function parseOptions(raw: string): unknown {
  for (const candidate of [raw, raw.includes('%') ? safeDecode(raw) : undefined]) {
    if (candidate === undefined) continue;
    try {
      return JSON.parse(candidate);
    } catch {}
  }
  throw new StsError('invalid_request', 'Invalid value for "options": not JSON.');
}

function safeDecode(s: string): string | undefined {
  try {
    return decodeURIComponent(s);
  } catch {
    return undefined;
  }
}

/**
 * Starts the Security Token Service stand-in on its own port: `POST
 * /v1/token` exchanges a live access token the stand-in issued for a
 * downscoped one that carries a Credential Access Boundary, validated as STS
 * validates it, and answers errors in STS's OAuth form.
 */
export async function startStsServer(
  ctx: StandInContext,
  options: { host?: string; port?: number } = {},
): Promise<StsServer> {
  const stats: StsStats = { requests: 0, exchanges: 0, refused: 0, withAuthorizationHeader: 0 };
  const issued: IssuedDownscopedToken[] = [];
  const bySource = new Map<string, number>();
  const byBoundary = new Map<string, number>();
  const faults = new FaultQueue<StsFault & { only?: string }>();
  const hanging = new Set<ServerResponse>();

  function exchange(params: Map<string, string>): Record<string, unknown> {
    const grantType = params.get('grant_type');
    if (!grantType) throw new StsError('invalid_request', 'Missing required parameter: grant_type.');
    if (grantType !== GRANT_TYPE)
      throw new StsError('unsupported_grant_type', `Unsupported grant_type: ${grantType}`);
    const requested = params.get('requested_token_type');
    if (requested !== ACCESS_TOKEN_TYPE)
      throw new StsError('invalid_request', `Invalid value for "requested_token_type": ${requested ?? ''}`);
    const subjectType = params.get('subject_token_type');
    if (subjectType !== ACCESS_TOKEN_TYPE) {
      throw new StsError(
        'invalid_request',
        subjectType && FEDERATED_TOKEN_TYPES.includes(subjectType)
          ? `subject_token_type ${subjectType} (workload identity federation) is not served by this stand-in.`
          : `Invalid value for "subject_token_type": ${subjectType ?? ''}`,
      );
    }
    const subjectToken = params.get('subject_token');
    if (!subjectToken) throw new StsError('invalid_request', 'Missing required parameter: subject_token.');
    const source = liveAccessToken(ctx, subjectToken);
    if (!source) throw new StsError('invalid_grant', 'The subject token is invalid, expired or revoked.');
    if (source.origin === 'sts') {
      throw new StsError(
        'invalid_grant',
        'The subject token already carries security attributes (a Credential Access Boundary); no more can be applied.',
      );
    }
    const raw = params.get('options');
    if (raw === undefined)
      throw new StsError(
        'invalid_request',
        'options with an accessBoundary is required for an access_token subject token.',
      );
    // google-auth-library (Node) sends the JSON as is; Python's google-auth percent-encodes it
    // once more before the form encoding (sts.py: urllib.parse.quote(json.dumps(options))).
    const parsed = parseOptions(raw);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      throw new StsError('invalid_request', 'Invalid value for "options": not a JSON object.');
    const opts = parsed as Record<string, unknown>;
    for (const k of Object.keys(opts)) {
      if (!['accessBoundary', 'userProject', 'audiences'].includes(k))
        throw new StsError(
          'invalid_request',
          `Invalid JSON payload received. Unknown name "${k}" in options.`,
        );
    }
    if (opts['accessBoundary'] === undefined)
      throw new StsError(
        'invalid_request',
        'options with an accessBoundary is required for an access_token subject token.',
      );
    let compiled: ReturnType<typeof compileBoundary>;
    try {
      compiled = compileBoundary(opts['accessBoundary']);
    } catch (err) {
      if (err instanceof BoundaryError) throw new StsError('invalid_request', err.message);
      throw err;
    }
    const token = `ya29.d.${randomBytes(48).toString('base64url')}`;
    ctx.accessTokens.set(token, {
      email: source.email,
      scope: source.scope,
      clientId: source.clientId,
      exp: source.exp,
      origin: 'sts',
      boundary: compiled,
      sourceToken: subjectToken,
      ...(source.sub === undefined ? {} : { sub: source.sub }),
    });
    ctx.onSecret(token);
    stats.exchanges++;
    bySource.set(subjectToken, (bySource.get(subjectToken) ?? 0) + 1);
    byBoundary.set(compiled.key, (byBoundary.get(compiled.key) ?? 0) + 1);
    issued.push({
      token,
      email: source.sub ?? source.email,
      sourceToken: subjectToken,
      boundary: compiled.boundary,
      boundaryKey: compiled.key,
      exp: source.exp,
    });
    // The downscoped token expires with its source. STS gives expires_in for a service
    // account's token and leaves it out for a user's (here: a domain-wide delegated one).
    return {
      access_token: token,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      ...(source.sub === undefined ? { expires_in: source.exp - Math.floor(ctx.now() / 1000) } : {}),
    };
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const text = await readBody(req);
    const path = new URL(req.url ?? '/', 'http://sts').pathname;
    stats.requests++;
    if (req.headers.authorization !== undefined) stats.withAuthorizationHeader++;
    const fault = faults.take('token');
    if (fault) {
      if (fault.kind === 'status') {
        stats.refused++;
        const headers =
          fault.retryAfterSeconds === undefined ? {} : { 'Retry-After': String(fault.retryAfterSeconds) };
        if (fault.body !== undefined) {
          res.writeHead(fault.status, { 'Content-Type': 'text/html; charset=UTF-8', ...headers });
          res.end(fault.body);
          return;
        }
        const error = fault.error ?? DEFAULT_ERROR[fault.status] ?? 'server_error';
        sendJson(
          res,
          fault.status,
          { error, error_description: fault.description ?? `Injected ${fault.status}.` },
          headers,
        );
        return;
      }
      if (await playTransportFault(fault, req, res, hanging)) {
        stats.refused++;
        return;
      }
    }
    try {
      if (path !== '/v1/token' || req.method !== 'POST')
        throw new StsError('invalid_request', `Method not found: ${req.method} ${path}`, 404);
      sendJson(res, 200, exchange(readParams(req, text)));
    } catch (err) {
      if (!(err instanceof StsError)) throw err;
      stats.refused++;
      sendJson(res, err.status, { error: err.error, error_description: err.description });
    }
  }

  const server = createServer((req, res) => {
    handle(req, res).catch(() => {
      if (!res.headersSent)
        sendJson(res, 500, { error: 'server_error', error_description: 'Internal error.' });
    });
  });
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, host, resolve));
  const url = `http://${host}:${(server.address() as AddressInfo).port}`;
  return {
    url,
    tokenUrl: `${url}/v1/token`,
    stats,
    issued,
    exchangesForSource: (token) => bySource.get(token) ?? 0,
    exchangesForBoundary: (b) => byBoundary.get(typeof b === 'string' ? b : canonicalJson(b)) ?? 0,
    boundaryKey: (b) => canonicalJson(b),
    injectFault(fault, times = 1) {
      faults.push(fault, times);
    },
    reset() {
      faults.clear();
    },
    close: () => closeServer(server, hanging),
  };
}
