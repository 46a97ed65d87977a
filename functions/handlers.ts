import { randomUUID } from 'node:crypto';
import type { Request, Response } from '@google-cloud/functions-framework';
import type { Audit, Served } from '../shared/broker.js';
import type { CacheOutcome } from '../shared/cache/types.js';
import { BrokerError } from '../shared/errors.js';
import { fingerprint, type LogFields, type Severity, traceFields } from '../shared/log.js';
import { rateLimitFor } from '../shared/policy/evaluate.js';
import {
  type MintRequest,
  parseIdTokenRequest,
  parseJwtRequest,
  parsePurgeRequest,
  parseTokenRequest,
} from '../shared/request.js';
import { MAX_BODY_BYTES } from './json-final-handler.js';
import { baseHeaders, sendError, sendJson } from './respond.js';
import type { Runtime } from './runtime.js';

/** What a path of a function does. */
export type Operation = 'token' | 'jwt' | 'idtoken' | 'purge';

/** An HTTP function as the functions framework calls it. */
export type HttpFunction = (req: Request, res: Response) => Promise<void>;

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

/** Builds the HTTP function of one target over a runtime. */
export function createHandler(rt: Runtime, target: Target): HttpFunction {
  const routes: Readonly<Record<string, Operation>> = TARGET_ROUTES[target];
  return async (req, res) => {
    const started = performance.now();
    const requestId = randomUUID();
    baseHeaders(res, requestId);
    const audit: Audit & LogFields = {};
    let message = 'request failed';
    let status = 500;
    let size = 0;
    try {
      const operation = Object.hasOwn(routes, req.path) ? routes[req.path] : undefined;
      if (operation === undefined)
        throw new BrokerError('not_found', `No such endpoint; POST to ${Object.keys(routes).join(', ')}.`);
      audit['operation'] = operation;
      if (req.method !== 'POST') throw new BrokerError('method_not_allowed', 'Use POST.');
      if (!isJson(req.headers['content-type'])) {
        throw new BrokerError(
          'unsupported_media_type',
          'Send the body as JSON, with Content-Type: application/json.',
        );
      }
      if ((req.rawBody?.length ?? 0) > MAX_BODY_BYTES) {
        throw new BrokerError(
          'request_too_large',
          `The request body is larger than ${MAX_BODY_BYTES} bytes.`,
        );
      }
      const caller = await rt.verifier.verify(req.headers.authorization);
      audit['caller'] = caller.email;
      const limit = rateLimitFor(rt.config.policy, caller.email);
      if (limit) {
        const decision = await rt.rateLimiter.check(caller.email, limit);
        if (!decision.success) {
          throw new BrokerError(
            'rate_limited',
            'This caller is over its request limit; retry after the given delay.',
            {
              retryAfterSeconds: decision.retryAfterSeconds,
            },
          );
        }
      }
      if (operation === 'purge') {
        const request = parsePurgeRequest(req.body);
        Object.assign(audit, request);
        const result = await rt.broker.purge(caller.email, request, audit);
        message = 'cache purged';
        status = 200;
        size = sendJson(res, 200, { purged: result.accounts, dropped_local_entries: result.dropped });
      } else {
        const request = PARSERS[operation](req.body);
        describe(audit, request);
        const served = await rt.broker.mint(caller.email, request, audit);
        audit['tokenFingerprint'] = fingerprint(served.token);
        message = `${operation} served`;
        status = 200;
        res.setHeader('Cache-Status', CACHE_STATUS[served.cache]);
        size = sendJson(res, 200, responseBody(request, served, rt.now()));
      }
    } catch (err) {
      const sent = sendError(res, err);
      status = sent.status;
      size = sent.size;
      audit['error'] = sent.body.error;
      if (sent.body.upstream_error !== undefined) audit['upstreamError'] = sent.body.upstream_error;
      message = status === 403 ? 'request denied' : 'request failed';
      if (!(err instanceof BrokerError)) audit['internal'] = describeUnexpected(err);
      else if (err.cause !== undefined) audit['cause'] = describeUnexpected(err.cause);
    } finally {
      const latencyMs = Math.round((performance.now() - started) * 100) / 100;
      audit['latencyMs'] = latencyMs;
      rt.log.log(severityOf(status), message, {
        requestId,
        ...traceFields(header(req, 'x-cloud-trace-context'), rt.config.projectId),
        httpRequest: {
          requestMethod: req.method,
          requestUrl: req.originalUrl ?? req.url,
          status,
          requestSize: String(req.rawBody?.length ?? 0),
          responseSize: String(size),
          userAgent: header(req, 'user-agent'),
          remoteIp: req.ip,
          latency: `${(latencyMs / 1000).toFixed(4)}s`,
          protocol: `HTTP/${req.httpVersion}`,
        },
        audit,
      });
    }
  };
}

function isJson(contentType: string | undefined): boolean {
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
