import { randomUUID } from 'node:crypto';
import type { Request, Response } from '@google-cloud/functions-framework';
import type { Caller } from '../shared/adapters/caller-auth.js';
import type { Audit, Served } from '../shared/broker.js';
import type { CacheOutcome } from '../shared/cache/types.js';
import { BrokerError } from '../shared/errors.js';
import { fingerprint, LABELS, type LogFields, type Severity, traceFields } from '../shared/log.js';
import { Lru } from '../shared/lru.js';
import { rateLimitFor } from '../shared/policy/evaluate.js';
import {
  type MintRequest,
  parseIdTokenRequest,
  parseJwtRequest,
  parsePurgeRequest,
  parseTokenRequest,
} from '../shared/request.js';
import { MAX_BODY_BYTES } from './json-final-handler.js';
import { sendError, sendJson } from './respond.js';
import type { Runtime } from './runtime.js';

/** What a path of a function does. */
export type Operation = 'token' | 'jwt' | 'idtoken' | 'purge';

/** An HTTP function as the functions framework calls it. */
export type HttpFunction = (req: Request, res: Response) => void | Promise<void>;

/** The paths of each function target (CONTRACT.md, "Entry points"). */
export const TARGET_ROUTES = {
  token: { '/': 'token' },
  jwt: { '/': 'jwt' },
  idtoken: { '/': 'idtoken' },
  admin: { '/purge': 'purge' },
  broker: { '/token': 'token', '/jwt': 'jwt', '/idtoken': 'idtoken', '/admin/purge': 'purge' },
} as const satisfies Record<string, Record<string, Operation>>;

export type Target = keyof typeof TARGET_ROUTES;

/** The example scheduled job's entry point (functions/examples/delegated-job.ts), registered from the same source. */
export const JOB_TARGET = 'delegatedJob';

const PARSERS = { token: parseTokenRequest, jwt: parseJwtRequest, idtoken: parseIdTokenRequest } as const;

const CACHE_STATUS: Record<CacheOutcome, string> = {
  hit: 'broker; hit',
  miss: 'broker; fwd=miss',
  stale: 'broker; hit; detail=stale',
};

/** One request as it goes: what the log line will say about it. */
interface Exchange {
  readonly started: number;
  readonly requestId: string;
  readonly audit: Audit & LogFields;
  message: string;
  status: number;
  size: number;
}

/**
 * Builds the HTTP function of one target over a runtime. A request whose
 * caller token was verified before and whose token is in this instance's
 * memory is answered synchronously, without a promise or any I/O: that is
 * most requests, and the functions framework's domain makes every promise
 * cost. Anything else continues asynchronously.
 */
export function createHandler(rt: Runtime, target: Target): HttpFunction {
  const routes: Readonly<Record<string, Operation>> = TARGET_ROUTES[target];
  return (req, res) => {
    const x: Exchange = {
      started: performance.now(),
      requestId: randomUUID(),
      audit: {},
      message: 'request failed',
      status: 500,
      size: 0,
    };
    let pending: Promise<void> | undefined;
    try {
      pending = handle(rt, routes, req, res, x);
    } catch (err) {
      fail(res, x, err);
    }
    if (pending === undefined) return finish(rt, req, x);
    return pending.then(
      () => finish(rt, req, x),
      (err: unknown) => {
        fail(res, x, err);
        finish(rt, req, x);
      },
    );
  };
}

/** Serves the request; returns undefined when it was answered synchronously. */
function handle(
  rt: Runtime,
  routes: Readonly<Record<string, Operation>>,
  req: Request,
  res: Response,
  x: Exchange,
): Promise<void> | undefined {
  const operation = Object.hasOwn(routes, req.path) ? routes[req.path] : undefined;
  if (operation === undefined)
    throw new BrokerError('not_found', `No such endpoint; POST to ${Object.keys(routes).join(', ')}.`);
  x.audit['operation'] = operation;
  if (req.method !== 'POST') throw new BrokerError('method_not_allowed', 'Use POST.');
  if (!isJson(req.headers['content-type'])) {
    throw new BrokerError(
      'unsupported_media_type',
      'Send the body as JSON, with Content-Type: application/json.',
    );
  }
  if ((req.rawBody?.length ?? 0) > MAX_BODY_BYTES) {
    throw new BrokerError('request_too_large', `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
  }
  const caller = rt.verifier.cached(req.headers.authorization);
  if (caller === undefined || operation === 'purge' || rateLimitFor(rt.config.policy, caller.email)) {
    return handleAsync(rt, operation, req, res, x, caller);
  }
  x.audit['caller'] = caller.email;
  const request = PARSERS[operation](req.body);
  describe(x.audit, request);
  const served = rt.broker.cached(caller.email, request, x.audit);
  if (served === undefined) return mintAndSend(rt, caller, request, res, x);
  send(rt, request, served, res, x);
  return undefined;
}

/** The rest: verifying a new caller token, rate limits, purges and everything the cache in memory cannot answer. */
async function handleAsync(
  rt: Runtime,
  operation: Operation,
  req: Request,
  res: Response,
  x: Exchange,
  known: Caller | undefined,
): Promise<void> {
  const caller =
    known ?? (await rt.verifier.verify(req.headers.authorization, header(req, 'x-serverless-authorization')));
  x.audit['caller'] = caller.email;
  const limit = rateLimitFor(rt.config.policy, caller.email);
  if (limit) {
    const decision = await rt.rateLimiter.check(caller.email, limit);
    if (!decision.success) {
      throw new BrokerError(
        'rate_limited',
        'This caller is over its request limit; retry after the given delay.',
        { retryAfterSeconds: decision.retryAfterSeconds },
      );
    }
  }
  if (operation === 'purge') {
    const request = parsePurgeRequest(req.body);
    Object.assign(x.audit, request);
    const result = await rt.broker.purge(caller.email, request, x.audit);
    x.message = 'cache purged';
    x.status = 200;
    x.size = sendJson(
      res,
      200,
      { purged: result.accounts, dropped_local_entries: result.dropped },
      x.requestId,
    );
    return;
  }
  const request = PARSERS[operation](req.body);
  describe(x.audit, request);
  await mintAndSend(rt, caller, request, res, x);
}

async function mintAndSend(
  rt: Runtime,
  caller: Caller,
  request: MintRequest,
  res: Response,
  x: Exchange,
): Promise<void> {
  send(rt, request, await rt.broker.mint(caller.email, request, x.audit), res, x);
}

function send(rt: Runtime, request: MintRequest, served: Served, res: Response, x: Exchange): void {
  x.audit['tokenFingerprint'] = fingerprintOf(served.token);
  x.message = `${request.kind} served`;
  x.status = 200;
  x.size = sendJson(res, 200, responseBody(request, served, rt.now()), x.requestId, [
    'Cache-Status',
    CACHE_STATUS[served.cache],
  ]);
}

// A token is served many times from the cache: hash it once. The cached string is the same object each
// time, so the lookup reuses its hash too.
const fingerprints = new Lru<string, string>(1024);

function fingerprintOf(token: string): string {
  let fp = fingerprints.get(token);
  if (fp === undefined) {
    fp = fingerprint(token);
    fingerprints.set(token, fp);
  }
  return fp;
}

/** Answers with the contract's error body, and notes it for the log line. */
function fail(res: Response, x: Exchange, err: unknown): void {
  const sent = sendError(res, err, x.requestId);
  x.status = sent.status;
  x.size = sent.size;
  x.audit['error'] = sent.body.error;
  if (sent.body.upstream_error !== undefined) x.audit['upstreamError'] = sent.body.upstream_error;
  x.message = x.status === 403 ? 'request denied' : 'request failed';
  if (!(err instanceof BrokerError)) x.audit['internal'] = describeUnexpected(err);
  else if (err.cause !== undefined) x.audit['cause'] = describeUnexpected(err.cause);
}

/** The one structured log line of the request, with its audit. */
function finish(rt: Runtime, req: Request, x: Exchange): void {
  const latencyMs = Math.round((performance.now() - x.started) * 100) / 100;
  x.audit['latencyMs'] = latencyMs;
  rt.log.log(severityOf(x.status), x.message, {
    [LABELS]: { operation: x.audit['operation'] ?? 'none' },
    requestId: x.requestId,
    ...traceFields(header(req, 'x-cloud-trace-context'), rt.config.projectId, header(req, 'traceparent')),
    httpRequest: {
      requestMethod: req.method,
      requestUrl: req.originalUrl ?? req.url,
      status: x.status,
      requestSize: String(req.rawBody?.length ?? 0),
      responseSize: String(x.size),
      userAgent: header(req, 'user-agent'),
      // The socket's peer, which is what express's req.ip is without `trust proxy`, minus its cost.
      remoteIp: req.socket.remoteAddress,
      latency: `${(latencyMs / 1000).toFixed(4)}s`,
      protocol: `HTTP/${req.httpVersion}`,
    },
    audit: x.audit,
  });
}

function isJson(contentType: string | undefined): boolean {
  if (contentType === 'application/json') return true; // what nearly every caller sends
  if (contentType === undefined) return false;
  const [type, ...params] = contentType.split(';').map((s) => s.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((p) => !p.startsWith('charset=') || p === 'charset=utf-8');
}

function describe(audit: LogFields, request: MintRequest): void {
  Object.assign(audit, request.target);
  audit['scopes'] = request.scopes;
  if (request.kind === 'token' && request.subject !== undefined) audit['subject'] = request.subject;
  if (request.kind !== 'token' && request.audience !== undefined) audit['audience'] = request.audience;
  if (request.minLifetimeSeconds > 0) audit['minLifetimeSeconds'] = request.minLifetimeSeconds;
}

function responseBody(request: MintRequest, served: Served, nowMs: number): Record<string, unknown> {
  const expiresIn = Math.max(0, Math.floor((served.expiresAt - nowMs) / 1000));
  const expiresAt = Math.floor(served.expiresAt / 1000);
  switch (request.kind) {
    case 'token':
      return {
        access_token: served.token,
        token_type: 'Bearer',
        expires_in: expiresIn,
        expires_at: expiresAt,
        scope: served.scope,
      };
    case 'jwt':
      return { token: served.token, token_type: 'Bearer', expires_in: expiresIn, expires_at: expiresAt };
    case 'idtoken':
      return { id_token: served.token, expires_in: expiresIn, expires_at: expiresAt };
  }
}

function severityOf(status: number): Severity {
  if (status >= 500) return 'ERROR';
  if (status === 401 || status === 403 || status === 429) return 'WARNING';
  return status >= 400 ? 'NOTICE' : 'INFO';
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** Name, code and message of an unexpected error, for operators; the logger redacts anything secret-shaped. */
function describeUnexpected(err: unknown): LogFields {
  if (!(err instanceof Error)) return { type: typeof err };
  const e = err as Error & { code?: unknown };
  return {
    name: e.name,
    code: typeof e.code === 'string' || typeof e.code === 'number' ? e.code : undefined,
    message: e.message.slice(0, 300),
  };
}
