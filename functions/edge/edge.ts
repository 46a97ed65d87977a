import { randomUUID } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { BrokerError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { type BodyRequest, MAX_BODY_BYTES, readBody, tooLarge } from './body.js';
import { requestLogFields } from './request-log.js';
import { sendError } from './respond.js';

/** Milliseconds a client has to send its request headers; then it gets a 408 and the connection is closed. */
export const HEADERS_TIMEOUT_MS = 5_000;
/** Milliseconds a client has to send its whole request, headers and body; then the same. */
export const REQUEST_TIMEOUT_MS = 10_000;

/** After a refusal, how long a client still sending has to read the answer before the connection is cut. */
const LINGER_MS = 1_000;

const SERVER_OPTIONS = {
  headersTimeout: HEADERS_TIMEOUT_MS,
  requestTimeout: REQUEST_TIMEOUT_MS,
  connectionsCheckingInterval: 1_000,
};

type ExpressLike = RequestListener & { handle: unknown } & ((
    req: IncomingMessage,
    res: ServerResponse,
    next: (err?: unknown) => void,
  ) => void);

/** Where the edge writes the log line of a request it answers itself. */
export interface EdgeOptions {
  log?: Logger;
  projectId?: string | undefined;
}

// The CommonJS module the framework uses (see shared/adapters/http.ts for why not an ES import).
const http = process.getBuiltinModule('node:http');

let installed = false;
/** The options of the last `installEdge`: each server takes those in force when it is created. */
let current: EdgeOptions = {};

/**
 * The broker's HTTP edge, in front of the functions framework. The framework
 * builds its server with `http.createServer(app)` after loading our module,
 * so we wrap that one call:
 * - the body is read here, with a hard cap of MAX_BODY_BYTES on the wire and
 *   after decompression (`./body.ts`); the framework's own parser, whose
 *   limit is 1024 MB, then finds the request already read and skips it;
 * - the express app gets a final handler that writes the contract's JSON
 *   errors (known upstream quirk: its body parser answers with express's
 *   HTML error page, and there is no option to change that);
 * - the server cuts clients that trickle their headers or body
 *   (`headersTimeout`, `requestTimeout`).
 * Requests the edge refuses get a log line like the handler's, written to
 * the logger of the last `installEdge` before the server was created (one
 * per process in Cloud Functions; tests build several in one process).
 */
export function installEdge(options: EdgeOptions = {}): void {
  current = options;
  if (installed) return;
  installed = true;
  const original = http.createServer;
  const patched = ((...args: unknown[]) => {
    const i = args.findIndex((a) => typeof a === 'function' && 'handle' in a);
    if (i >= 0) {
      const app = args[i] as ExpressLike;
      const edge = current;
      args[i] = (req: BodyRequest, res: ServerResponse) => {
        const started = performance.now();
        const length = Number(req.headers['content-length'] ?? 0);
        if (length > MAX_BODY_BYTES) return answer(edge, req, res, tooLarge(), 0, started);
        // The framework answers these two paths itself, with an empty 404.
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/favicon.ico' || path === '/robots.txt')
          return answer(edge, req, res, new BrokerError('not_found', 'No such endpoint.'), 0, started);
        readBody(req, (err, wireBytes) => {
          if (err !== undefined) answer(edge, req, res, err, wireBytes, started);
          else app(req, res, (e?: unknown) => finalHandler(edge, e, req, res, started));
        });
      };
      // The framework passes no options: add the timeouts that cut clients who trickle (checked every second).
      if (i === 0) args.unshift(SERVER_OPTIONS);
    }
    return Reflect.apply(original, http, args);
  }) as typeof http.createServer;
  http.createServer = patched;
}

/**
 * Answers a request the edge refuses. When some of its body is unread, the
 * connection is closed: what is left is never read.
 */
function answer(
  options: EdgeOptions,
  req: BodyRequest,
  res: ServerResponse,
  err: BrokerError,
  wireBytes: number,
  started: number,
): void {
  const requestId = randomUUID();
  const unread = bodyUnread(req);
  if (unread) linger(req);
  const sent = sendError(res, err, requestId, unread ? ['Connection', 'close'] : []);
  options.log?.log(sent.status >= 500 ? 'ERROR' : 'NOTICE', 'request failed', {
    requestId,
    ...requestLogFields(req, options.projectId, {
      requestUrl: req.url,
      status: sent.status,
      requestSize: wireBytes,
      responseSize: sent.size,
      latencyMs: performance.now() - started,
    }),
    audit: { error: sent.body.error },
  });
}

/** Whether some of the request's body may still be on its way (then the connection cannot be reused). */
function bodyUnread(req: IncomingMessage): boolean {
  if (req.complete) return false;
  const length = req.headers['content-length'];
  return req.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/**
 * Lets a client that is still sending read the refusal. Node destroys a
 * `Connection: close` socket as soon as the answer is written; data the
 * client sends after that makes the kernel reset the connection, and many
 * clients then lose the answer they had not read yet (EPIPE, ECONNRESET).
 * So the answer is followed by a half close, nothing more is read (the
 * request stays paused: the client's writes stall, no memory or CPU is
 * spent on them), and the socket is destroyed LINGER_MS later.
 */
function linger(req: IncomingMessage): void {
  const socket = req.socket;
  req.pause();
  req.on('error', () => {});
  // What the HTTP server calls once the answer is written (Node's behaviour: it destroys the socket).
  socket.destroySoon = () => {
    socket.end();
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  };
}

/**
 * Maps what express would render as HTML into the contract's JSON errors,
 * with the request's one log line like every other answer.
 */
function finalHandler(
  options: EdgeOptions,
  err: unknown,
  req: BodyRequest,
  res: ServerResponse,
  started: number,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  req.resume();
  answer(options, req, res, toBrokerError(err), req.rawBody?.length ?? 0, started);
}

function toBrokerError(err: unknown): BrokerError {
  if (err === undefined) return new BrokerError('not_found', 'No such endpoint.');
  const e = err as { type?: unknown; status?: unknown };
  switch (e.type) {
    case 'entity.too.large':
      return tooLarge();
    case 'encoding.unsupported':
    case 'charset.unsupported':
      return new BrokerError(
        'unsupported_media_type',
        'The body must be UTF-8 JSON (Content-Type: application/json).',
      );
    case 'entity.parse.failed':
      return new BrokerError('invalid_request', 'The body is not valid JSON.');
    default:
      return typeof e.status === 'number' && e.status >= 400 && e.status < 500
        ? new BrokerError('invalid_request', 'The request could not be read.')
        : new BrokerError('internal_error', 'The broker failed unexpectedly; see its logs.');
  }
}
