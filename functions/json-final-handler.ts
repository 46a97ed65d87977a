import { randomUUID } from 'node:crypto';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { BrokerError } from '../shared/errors.js';
import { sendError } from './respond.js';

/** Largest request body the broker reads (CONTRACT.md: 413 over 64 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;

type ExpressLike = RequestListener & { handle: unknown } & ((
    req: IncomingMessage,
    res: ServerResponse,
    next: (err?: unknown) => void,
  ) => void);

// The CommonJS module the framework uses (see shared/adapters/http.ts for why not an ES import).
const http = process.getBuiltinModule('node:http');

let installed = false;

/**
 * Makes the functions framework answer in JSON when it fails before our
 * handler runs. Known upstream quirk: its body parser answers malformed JSON
 * (and bad charsets) with express's HTML error page, and there is no option
 * to change that. The framework builds its server with `http.createServer(app)`
 * after loading our module, so we wrap that one call: the express app gets a
 * final handler that writes the contract's JSON errors, and bodies that
 * announce more than 64 KiB are refused before anything reads them.
 */
export function installJsonFinalHandler(): void {
  if (installed) return;
  installed = true;
  const original = http.createServer;
  const patched = ((...args: unknown[]) => {
    const i = args.findIndex((a) => typeof a === 'function' && 'handle' in a);
    if (i >= 0) {
      const app = args[i] as ExpressLike;
      args[i] = (req: IncomingMessage, res: ServerResponse) => {
        const length = Number(req.headers['content-length'] ?? 0);
        if (length > MAX_BODY_BYTES) {
          req.resume();
          sendError(res, tooLarge(), randomUUID(), ['Connection', 'close']);
          return;
        }
        // The framework answers these two paths itself, with an empty 404.
        const path = (req.url ?? '/').split('?')[0];
        if (path === '/favicon.ico' || path === '/robots.txt') {
          req.resume();
          sendError(res, new BrokerError('not_found', 'No such endpoint.'), randomUUID());
          return;
        }
        app(req, res, (err?: unknown) => finalHandler(err, req, res));
      };
    }
    return Reflect.apply(original, http, args);
  }) as typeof http.createServer;
  http.createServer = patched;
}

function tooLarge(): BrokerError {
  return new BrokerError('request_too_large', `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
}

/** Maps what express would render as HTML into the contract's JSON errors. */
function finalHandler(err: unknown, req: IncomingMessage, res: ServerResponse): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  req.resume();
  sendError(res, toBrokerError(err), randomUUID());
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
