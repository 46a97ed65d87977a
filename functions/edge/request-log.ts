import type { IncomingMessage } from 'node:http';
import { type LogFields, traceFields } from '../../shared/log.js';

/** A request header's first value. */
export function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * The fields every request's log line carries (docs/operations.md): the
 * trace, from W3C `traceparent` or `X-Cloud-Trace-Context`, and Cloud
 * Logging's `httpRequest`. Used by the handlers and by the edge that
 * refuses a request before them.
 */
export function requestLogFields(
  req: IncomingMessage,
  projectId: string | undefined,
  answered: {
    requestUrl: string | undefined;
    status: number;
    requestSize: number;
    responseSize: number;
    latencyMs: number;
  },
): LogFields {
  return {
    ...traceFields(header(req, 'x-cloud-trace-context'), projectId, header(req, 'traceparent')),
    httpRequest: {
      requestMethod: req.method,
      requestUrl: answered.requestUrl,
      status: answered.status,
      requestSize: String(answered.requestSize),
      responseSize: String(answered.responseSize),
      userAgent: header(req, 'user-agent'),
      // The socket's peer, which is what express's req.ip is without `trust proxy`, minus its cost.
      remoteIp: req.socket.remoteAddress,
      latency: `${(answered.latencyMs / 1000).toFixed(4)}s`,
      protocol: `HTTP/${req.httpVersion}`,
    },
  };
}
