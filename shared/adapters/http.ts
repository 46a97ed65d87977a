import type { IncomingHttpHeaders } from 'node:http';

// Taken as CommonJS builtins, not `import`ed: on Node 22 an ES import of node:http builds a facade that reads
// every export, and one of them loads undici (about 8 ms of a cold start, measured in the bench).
const http = process.getBuiltinModule('node:http');
const https = process.getBuiltinModule('node:https');

/** One HTTP exchange, as the broker's adapters need it: small bodies, a deadline, no redirects. */
export interface HttpRequest {
  readonly method?: 'GET' | 'POST';
  readonly headers?: Readonly<Record<string, string>>;
  readonly body?: string;
  /** Deadline of the whole exchange, from the request to the last byte of the answer. */
  readonly timeoutMs: number;
  /** Largest answer read; a longer one fails the exchange. */
  readonly maxBytes?: number;
}

export interface HttpResponse {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
}

export interface HttpClient {
  request(url: string, req: HttpRequest): Promise<HttpResponse>;
}

/** The exchange ran past its deadline (the socket was destroyed). */
export class HttpTimeoutError extends Error {
  override readonly name = 'HttpTimeoutError';
  readonly code = 'ETIMEDOUT';
}

/** The answer was longer than the request's `maxBytes` (the exchange was cut there). */
export class HttpResponseTooLargeError extends Error {
  override readonly name = 'HttpResponseTooLargeError';
  readonly code = 'ERESPONSETOOLARGE';
}

const DEFAULT_MAX_BYTES = 1024 * 1024;

/**
 * A small HTTP/1.1 client over `node:http` with keep-alive agents, for the
 * shared cache (Upstash REST) and the JWKS. `fetch` would do, but Node's
 * fetch loads undici on first use (about 16 ms of a cold start, measured in
 * the bench) and costs more per request; `node:http` is already loaded by
 * the functions framework. Redirects are not followed.
 */
export function createHttpClient(options: { maxSockets?: number } = {}): HttpClient {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 64, scheduling: 'lifo' as const };
  const agents = { http: new http.Agent(agentOptions), https: new https.Agent(agentOptions) };
  return {
    request(url, req) {
      const u = new URL(url);
      const secure = u.protocol === 'https:';
      if (!secure && u.protocol !== 'http:')
        return Promise.reject(new TypeError('only http: and https: URLs'));
      const maxBytes = req.maxBytes ?? DEFAULT_MAX_BYTES;
      return new Promise<HttpResponse>((resolve, reject) => {
        const outgoing = (secure ? https : http).request(
          u,
          {
            method: req.method ?? 'GET',
            headers:
              req.body === undefined
                ? req.headers
                : { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) },
            agent: secure ? agents.https : agents.http,
          },
          (res) => {
            const chunks: Buffer[] = [];
            let size = 0;
            res.on('data', (chunk: Buffer) => {
              size += chunk.length;
              if (size > maxBytes) {
                outgoing.destroy(
                  new HttpResponseTooLargeError(`the answer is larger than ${maxBytes} bytes`),
                );
              } else chunks.push(chunk);
            });
            res.on('end', () => {
              clearTimeout(timer);
              resolve({
                status: res.statusCode ?? 0,
                headers: res.headers,
                body: Buffer.concat(chunks, size).toString('utf8'),
              });
            });
            res.on('error', fail);
          },
        );
        const timer = setTimeout(
          () => outgoing.destroy(new HttpTimeoutError('the exchange timed out')),
          req.timeoutMs,
        );
        function fail(err: Error): void {
          clearTimeout(timer);
          reject(err);
        }
        outgoing.on('error', fail);
        outgoing.end(req.body);
      });
    },
  };
}

/** The process's client: one pool of kept-alive connections per origin for every adapter that uses it. */
export const sharedHttpClient: HttpClient = createHttpClient();
