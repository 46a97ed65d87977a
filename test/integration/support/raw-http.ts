import { readFileSync } from 'node:fs';
import { request } from 'node:http';

/** What came back, and how much of the body the client managed to hand to its socket. */
export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: Record<string, unknown>;
  /** Body bytes written to the socket before the server answered or closed it. */
  sent: number;
}

/**
 * Sends a request with node:http, writing `body` chunk by chunk (chunked
 * unless a Content-Length is given), and resolves with the answer even when
 * the server answers early and closes the connection while we still write.
 * Rejects only when no answer came.
 */
export function rawRequest(
  url: string,
  options: {
    method?: string;
    headers?: Record<string, string>;
    body?: Iterable<Buffer>;
    timeoutMs?: number;
  },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    let sent = 0;
    let answered = false;
    const req = request(url, {
      method: options.method ?? 'POST',
      headers: options.headers ?? {},
      timeout: options.timeoutMs ?? 20_000,
    });
    req.on('timeout', () => req.destroy(new Error('client timeout')));
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    req.on('response', (res) => {
      answered = true;
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      const finish = () => {
        const text = Buffer.concat(parts).toString('utf8');
        let json: Record<string, unknown> = {};
        try {
          json = JSON.parse(text) as Record<string, unknown>;
        } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json, sent });
      };
      res.on('end', finish);
      res.on('error', finish);
      res.on('aborted', finish);
    });
    const chunks = options.body?.[Symbol.iterator]();
    // One chunk per turn of the event loop, so that an early answer is read while the body is still going out.
    const pump = () => {
      if (chunks === undefined) return void req.end();
      if (answered || req.destroyed) return;
      const next = chunks.next();
      if (next.done) return void req.end();
      sent += next.value.length;
      if (req.write(next.value)) setImmediate(pump);
      else req.once('drain', pump);
    };
    pump();
  });
}

/** Resident memory of a process, in MB (Linux). */
export function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? 0) / 1024;
}

/** The broker's log line of one request, found by the request id it answered with. */
export async function logLineOf(
  lines: readonly string[],
  requestId: unknown,
): Promise<Record<string, unknown> | undefined> {
  for (let i = 0; i < 40; i++) {
    for (const l of lines) {
      if (!l.includes(String(requestId))) continue;
      const parsed = JSON.parse(l) as Record<string, unknown>;
      if (parsed['requestId'] === requestId) return parsed;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return undefined;
}
