import { randomUUID } from 'node:crypto';
import type { Request, Response } from '@google-cloud/functions-framework';
import type {
  IdTokenResponseBody,
  JwtResponseBody,
  PurgeResponseBody,
  TokenResponseBody,
} from '../packages/wire/wire.js';
import type { Served } from '../shared/broker.js';
import { BrokerError } from '../shared/errors.js';
import { remainingSeconds } from '../shared/lifetime.js';
import { fingerprint, LABELS, type LogFields, type Severity } from '../shared/log.js';
import { Lru } from '../shared/lru.js';
import type { MintRequest } from '../shared/request.js';
import type { Action, Call, Result } from '../shared/service.js';
import { parseJsonBody } from './doors/json.js';
import { parseTokenExchange, tokenExchangeError, tokenExchangeResponse } from './doors/token-exchange.js';
import { MAX_BODY_BYTES } from './edge/edge.js';
import { header, requestLogFields } from './edge/request-log.js';
import { sendError, sendJson } from './edge/respond.js';
import type { Runtime } from './runtime.js';

/** What a path of a function does: one of the service's actions, or token exchange (a `token` call by form). */
export type Route = Action | 'sts';

/** An HTTP function as the functions framework calls it. */
export type HttpFunction = (req: Request, res: Response) => void | Promise<void>;

/** The paths of each function target (docs/contract.md, "Targets and paths"). */
export const TARGET_ROUTES = {
  token: { '/': 'token' },
  jwt: { '/': 'jwt' },
  idtoken: { '/': 'idtoken' },
  admin: { '/purge': 'purge' },
  sts: { '/': 'sts' },
  broker: { '/token': 'token', '/jwt': 'jwt', '/idtoken': 'idtoken', '/sts': 'sts', '/admin/purge': 'purge' },
} as const satisfies Record<string, Record<string, Route>>;

/** A function target: one deployable function. */
export type FunctionTarget = keyof typeof TARGET_ROUTES;

/** The example scheduled job's entry point (functions/examples/delegated-job.ts), registered from the same source. */
export const JOB_TARGET = 'delegatedJob';

const CACHE_STATUS = {
  hit: 'broker; hit',
  miss: 'broker; fwd=miss',
  stale: 'broker; hit; detail=stale',
} as const;

/** What the request's one log line says beyond the service's audit record. */
interface Answer {
  status: number;
  size: number;
  message: string;
  fields: LogFields;
}

/**
 * Builds the HTTP function of one target: HTTP only. It checks the method,
 * media type and size, turns the request into one service call, and writes
 * the answer and one log line. A call the service answers synchronously (a
 * cache hit for a known caller) is answered without a promise.
 */
export function createHandler(rt: Runtime, target: FunctionTarget): HttpFunction {
  const routes: Readonly<Record<string, Route>> = TARGET_ROUTES[target];
  return (req, res) => {
    const started = performance.now();
    const requestId = randomUUID();
    const route = Object.hasOwn(routes, req.path) ? routes[req.path] : undefined;
    let outcome: Result | Promise<Result>;
    try {
      outcome = rt.service.handle(toCall(route, routes, req));
    } catch (err) {
      // Refused before the service: no route, method, media type, size or form.
      const answer = fail(res, err, requestId, route === 'sts');
      return finish(rt, req, requestId, started, answer, { operation: route });
    }
    if (!(outcome instanceof Promise)) return respond(rt, req, res, requestId, started, route, outcome);
    return outcome.then((result) => respond(rt, req, res, requestId, started, route, result));
  };
}

function toCall(route: Route | undefined, routes: Readonly<Record<string, Route>>, req: Request): Call {
  if (route === undefined)
    throw new BrokerError('not_found', `No such endpoint; POST to ${Object.keys(routes).join(', ')}.`);
  if (req.method !== 'POST') throw new BrokerError('method_not_allowed', 'Use POST.');
  if ((req.rawBody?.length ?? 0) > MAX_BODY_BYTES) {
    throw new BrokerError('request_too_large', `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
  }
  if (route === 'sts') return parseTokenExchange(req.headers['content-type'], req.rawBody);
  const body = parseJsonBody(req.headers['content-type'], req.rawBody);
  return {
    action: route,
    credential: {
      authorization: req.headers.authorization,
      serverlessAuthorization: header(req, 'x-serverless-authorization'),
    },
    body,
  };
}

/** Said with every purge that reached only this process (no shared cache; docs/contract.md). */
const PURGE_THIS_INSTANCE_NOTE =
  'No shared cache is configured, so only this instance was purged. Other instances keep serving the tokens they hold until those expire (at most an hour); to drop them too, configure a shared cache or restart every instance.';

function respond(
  rt: Runtime,
  req: Request,
  res: Response,
  requestId: string,
  started: number,
  route: Route | undefined,
  result: Result,
): void {
  let answer: Answer;
  if (!result.ok) answer = fail(res, result.error, requestId, route === 'sts');
  else if ('purged' in result) {
    const { accounts, dropped, reach, withinSeconds } = result.purged;
    const body: PurgeResponseBody = {
      purged: accounts === 'all' ? 'all' : [...accounts],
      dropped_local_entries: dropped,
      reach,
      ...(withinSeconds === undefined ? {} : { within_seconds: withinSeconds }),
      ...(reach === 'this_instance' ? { note: PURGE_THIS_INSTANCE_NOTE } : {}),
    };
    answer = { status: 200, size: sendJson(res, 200, body, requestId), message: 'cache purged', fields: {} };
  } else {
    const { request, served } = result;
    const body =
      route === 'sts'
        ? tokenExchangeResponse(served, rt.now())
        : responseBody(request.kind, served, rt.now());
    const size = sendJson(res, 200, body, requestId, ['Cache-Status', CACHE_STATUS[served.cache]]);
    answer = {
      status: 200,
      size,
      message: `${request.kind} served`,
      fields: { tokenFingerprint: fingerprintOf(served.token) },
    };
  }
  finish(rt, req, requestId, started, answer, result.audit);
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

/** Answers with the contract's error body (RFC 6749's for token exchange), and notes it for the log line. */
function fail(res: Response, err: unknown, requestId: string, tokenExchange: boolean): Answer {
  const sent = sendError(res, tokenExchange ? tokenExchangeError(err) : err, requestId);
  const fields: LogFields = { error: sent.body.error };
  if (sent.body.upstream_error !== undefined) fields['upstreamError'] = sent.body.upstream_error;
  if (!(err instanceof BrokerError)) fields['internal'] = describeUnexpected(err);
  else {
    if (err.remedy !== undefined) fields['remedy'] = err.remedy;
    if (err.cause !== undefined) fields['cause'] = describeUnexpected(err.cause);
  }
  return {
    status: sent.status,
    size: sent.size,
    message:
      sent.status === 403 || sent.body.error === 'invalid_target' ? 'request denied' : 'request failed',
    fields,
  };
}

/** The one structured log line of the request, with its audit. */
function finish(
  rt: Runtime,
  req: Request,
  requestId: string,
  started: number,
  answer: Answer,
  audit: { readonly operation?: string | undefined },
): void {
  const latencyMs = Math.round((performance.now() - started) * 100) / 100;
  rt.log.log(severityOf(answer.status), answer.message, {
    [LABELS]: { operation: audit.operation ?? 'none' },
    requestId,
    ...requestLogFields(req, rt.config.projectId, {
      requestUrl: req.originalUrl ?? req.url,
      status: answer.status,
      requestSize: req.rawBody?.length ?? 0,
      responseSize: answer.size,
      latencyMs,
    }),
    audit: { ...audit, ...answer.fields, latencyMs },
  });
}

function responseBody(
  kind: MintRequest['kind'],
  served: Served,
  nowMs: number,
): TokenResponseBody | JwtResponseBody | IdTokenResponseBody {
  const expiresIn = Math.max(0, remainingSeconds(served.expiresAt, nowMs));
  const expiresAt = Math.floor(served.expiresAt / 1000);
  switch (kind) {
    case 'token':
      return {
        access_token: served.token,
        token_type: 'Bearer',
        expires_in: expiresIn,
        expires_at: expiresAt,
        scope: served.scope ?? '',
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
