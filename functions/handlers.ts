import { randomUUID } from 'node:crypto';
import type { Request, Response } from '@google-cloud/functions-framework';
import { BrokerError } from '../shared/errors.js';
import { fingerprint, LABELS, type LogFields, type Severity } from '../shared/log.js';
import { Lru } from '../shared/lru.js';
import type { Action, AuditRecord, Result } from '../shared/service.js';
import type { Door, Written } from './doors/door.js';
import { jsonDoor } from './doors/json.js';
import { tokenExchangeDoor } from './doors/token-exchange.js';
import { MAX_BODY_BYTES } from './edge/body.js';
import { requestLogFields } from './edge/request-log.js';
import type { Runtime } from './runtime.js';

/** What a path leads to: one of the service's actions, through a door. */
interface Route {
  readonly action: Action;
  readonly door: Door;
}

const json = (action: Action): Route => ({ action, door: jsonDoor });
const sts: Route = { action: 'token', door: tokenExchangeDoor };

/** The paths of each function target (docs/contract.md, "Targets and paths"). */
export const TARGET_ROUTES = {
  token: { '/': json('token') },
  jwt: { '/': json('jwt') },
  idtoken: { '/': json('idtoken') },
  admin: { '/purge': json('purge') },
  sts: { '/': sts },
  broker: {
    '/token': json('token'),
    '/jwt': json('jwt'),
    '/idtoken': json('idtoken'),
    '/sts': sts,
    '/admin/purge': json('purge'),
  },
} as const satisfies Record<string, Record<string, Route>>;

/** A function target: one deployable function. */
export type FunctionTarget = keyof typeof TARGET_ROUTES;

/** The example scheduled job's entry point (functions/examples/delegated-job.ts), registered from the same source. */
export const JOB_TARGET = 'delegatedJob';

/** An HTTP function as the functions framework calls it. */
export type HttpFunction = (req: Request, res: Response) => void | Promise<void>;

/**
 * Builds the HTTP function of one target: HTTP only. It finds the route,
 * checks the method and size, lets the route's door read the request into
 * one service call, and lets the same door write the answer; then it writes
 * the request's one log line. A call the service answers synchronously (a
 * cache hit for a known caller) is answered without a promise.
 */
export function createHandler(rt: Runtime, target: FunctionTarget): HttpFunction {
  const routes: Readonly<Record<string, Route>> = TARGET_ROUTES[target];
  const paths = Object.keys(routes).join(', ');
  return (req, res) => {
    const started = performance.now();
    const requestId = randomUUID();
    const route = Object.hasOwn(routes, req.path) ? routes[req.path] : undefined;
    const door = route?.door ?? jsonDoor;
    let outcome: Result | Promise<Result>;
    try {
      if (route === undefined) throw new BrokerError('not_found', `No such endpoint; POST to ${paths}.`);
      if (req.method !== 'POST') throw new BrokerError('method_not_allowed', 'Use POST.');
      if ((req.rawBody?.length ?? 0) > MAX_BODY_BYTES) {
        throw new BrokerError(
          'request_too_large',
          `The request body is larger than ${MAX_BODY_BYTES} bytes.`,
        );
      }
      outcome = rt.service.handle(door.read(req, route.action));
    } catch (err) {
      // Refused before the service: no route, method, media type, size or form.
      const written = door.fail(res, err, requestId);
      const audit = route === undefined ? {} : { operation: route.action };
      return finish(rt, req, requestId, started, door, written, err, audit);
    }
    if (!(outcome instanceof Promise)) return respond(rt, req, res, requestId, started, door, outcome);
    return outcome.then((result) => respond(rt, req, res, requestId, started, door, result));
  };
}

function respond(
  rt: Runtime,
  req: Request,
  res: Response,
  requestId: string,
  started: number,
  door: Door,
  result: Result,
): void {
  if (!result.ok) {
    const written = door.fail(res, result.error, requestId);
    finish(rt, req, requestId, started, door, written, result.error, result.audit);
  } else {
    const written = door.answer(res, result, requestId, rt.now());
    finish(rt, req, requestId, started, door, written, undefined, result.audit, result);
  }
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

/** The one structured log line of the request, with its audit. */
function finish(
  rt: Runtime,
  req: Request,
  requestId: string,
  started: number,
  door: Door,
  written: Written,
  err: unknown,
  audit: Partial<AuditRecord>,
  result?: Extract<Result, { ok: true }>,
): void {
  const latencyMs = Math.round((performance.now() - started) * 100) / 100;
  const fields: LogFields = {};
  if (written.error !== undefined) fields['error'] = written.error;
  if (written.upstreamError !== undefined) fields['upstreamError'] = written.upstreamError;
  if (err !== undefined) {
    if (!(err instanceof BrokerError)) fields['internal'] = describeUnexpected(err);
    else {
      if (err.reason !== undefined && audit.reason === undefined) fields['reason'] = err.reason;
      if (err.remedy !== undefined) fields['remedy'] = err.remedy;
      if (err.cause !== undefined) fields['cause'] = describeUnexpected(err.cause);
    }
  }
  let message: string;
  if (result === undefined) {
    message =
      written.status === 403 || written.error === 'invalid_target' ? 'request denied' : 'request failed';
  } else if ('served' in result) {
    message = `${result.request.kind} served`;
    fields['tokenFingerprint'] = fingerprintOf(result.served.token);
  } else message = 'cache purged';
  rt.log.log(severityOf(written.status), message, {
    [LABELS]: { operation: audit.operation ?? 'none', door: door.name },
    requestId,
    ...requestLogFields(req, rt.config.projectId, {
      requestUrl: req.originalUrl ?? req.url,
      status: written.status,
      requestSize: req.rawBody?.length ?? 0,
      responseSize: written.size,
      latencyMs,
    }),
    audit: { ...audit, ...fields, latencyMs },
  });
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
