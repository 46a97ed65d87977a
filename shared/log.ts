import { createHash } from 'node:crypto';

/** Cloud Logging severities (LogSeverity). */
export type Severity = 'DEBUG' | 'INFO' | 'NOTICE' | 'WARNING' | 'ERROR' | 'CRITICAL';

/** Fields of one structured log line, besides `severity` and `message`. */
export type LogFields = Record<string, unknown>;

/** Writes Cloud Logging structured JSON lines; one object per line on stdout. */
export interface Logger {
  log(severity: Severity, message: string, fields?: LogFields): void;
  /** A logger whose lines carry `fields` too (e.g. the trace of one request). */
  child(fields: LogFields): Logger;
}

export interface LoggerOptions {
  write?: (line: string) => void;
  base?: LogFields;
  /** Names the service in ERROR and CRITICAL lines, which are then in the format Error Reporting collects. */
  serviceContext?: { service: string; version: string };
}

/** Cloud Logging's field for a line's labels (a flat map of strings); a line's labels add to its logger's. */
export const LABELS = 'logging.googleapis.com/labels';

/** What marks a structured line as an error event for Error Reporting, whatever its message. */
export const REPORTED_ERROR_EVENT =
  'type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent';

// Belt and braces: the broker never hands a secret to the logger, and this pass makes sure none slips through.
const SECRET_PATTERNS: readonly RegExp[] = [
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
  /\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.?[A-Za-z0-9_-]*/g,
  /\bya29\.[A-Za-z0-9_.-]+/g,
  /\bBearer\s+[A-Za-z0-9_.~+/=-]+/gi,
];

/**
 * Matches every line in which a SECRET_PATTERNS match could be: each pattern
 * starts with one of these words, and JSON escaping leaves them intact.
 */
const SUSPECT = /PRIVATE KEY|eyJ|ya29\.|bearer/i;

/** Replaces anything that looks like a private key, a JWT, an access token or a bearer credential. */
export function redact(text: string): string {
  let out = text;
  for (const pattern of SECRET_PATTERNS) out = out.replace(pattern, '[REDACTED]');
  return out;
}

function redactValue(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return redact(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redactValue(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = redactValue(v, depth + 1);
  return out;
}

let pending = '';
let flushOnExit = false;

function flushStdout(): void {
  if (pending === '') return;
  const chunk = pending;
  pending = '';
  process.stdout.write(chunk);
}

/**
 * The default writer: lines go to stdout in one write per turn of the event
 * loop, so under load one system call carries many lines (measured in the
 * bench). What is pending when the process exits is written then.
 */
function writeStdout(line: string): void {
  if (pending === '') {
    if (!flushOnExit) {
      flushOnExit = true;
      process.once('exit', flushStdout);
    }
    setImmediate(flushStdout);
  }
  pending += `${line}\n`;
}

/** Creates a logger that writes one JSON object per line, the format Cloud Logging's agents parse. */
export function createLogger(options: LoggerOptions = {}): Logger {
  const write = options.write ?? writeStdout;
  const base = options.base ?? {};
  const baseLabels = base[LABELS] as LogFields | undefined;
  const errorEvent =
    options.serviceContext === undefined
      ? undefined
      : { '@type': REPORTED_ERROR_EVENT, serviceContext: options.serviceContext };
  return {
    log(severity, message, fields = {}) {
      const entry: LogFields = { ...base, ...fields, severity, message, time: new Date().toISOString() };
      if (baseLabels !== undefined && fields[LABELS] !== undefined)
        entry[LABELS] = { ...baseLabels, ...(fields[LABELS] as LogFields) };
      if (errorEvent !== undefined && (severity === 'ERROR' || severity === 'CRITICAL'))
        Object.assign(entry, errorEvent);
      const line = JSON.stringify(entry);
      // Most lines hold nothing secret-shaped: one scan of the line proves it, and only a suspect line is walked.
      write(SUSPECT.test(line) ? JSON.stringify(redactValue(entry)) : line);
    },
    child(fields) {
      const merged: LogFields = { ...base, ...fields };
      if (baseLabels !== undefined && fields[LABELS] !== undefined)
        merged[LABELS] = { ...baseLabels, ...(fields[LABELS] as LogFields) };
      return createLogger({
        write,
        base: merged,
        ...(options.serviceContext === undefined ? {} : { serviceContext: options.serviceContext }),
      });
    },
  };
}

/** A logger that drops everything. */
export const silentLogger: Logger = { log() {}, child: () => silentLogger };

/** A short SHA-256 fingerprint of a token, for audit lines: enough to correlate, useless to an attacker. */
export function fingerprint(token: string): string {
  return `sha256:${createHash('sha256').update(token).digest('base64url').slice(0, 16)}`;
}

const UINT64_MAX = 2n ** 64n - 1n;
const CLOUD_TRACE = /^([0-9a-fA-F]{32})(?:\/(\d{1,20}))?(?:;o=([01]))?$/;
const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);

/**
 * Cloud Logging trace fields (`logging.googleapis.com/trace`, `spanId`,
 * `trace_sampled`) from a W3C `traceparent` (version 00, preferred when
 * valid) or `X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=1`. Both are checked
 * strictly and bounded before anything of them reaches a line: a trace id of
 * 32 hex digits (not all zero), a span id that fits 64 bits (not zero). A
 * header that fails is ignored. Without a project id the trace is kept as a
 * plain field.
 */
export function traceFields(
  cloudTraceContext: string | undefined,
  projectId: string | undefined,
  traceparent?: string,
): LogFields {
  const parsed = parseTraceparent(traceparent) ?? parseCloudTrace(cloudTraceContext);
  if (parsed === undefined) return {};
  const fields: LogFields = projectId
    ? { 'logging.googleapis.com/trace': `projects/${projectId}/traces/${parsed.traceId}` }
    : { trace: parsed.traceId };
  if (parsed.spanId !== undefined) fields['logging.googleapis.com/spanId'] = parsed.spanId;
  if (parsed.sampled !== undefined) fields['logging.googleapis.com/trace_sampled'] = parsed.sampled;
  return fields;
}

interface Trace {
  traceId: string;
  /** 16 lower-case hex digits. */
  spanId?: string;
  sampled?: boolean;
}

function parseTraceparent(header: string | undefined): Trace | undefined {
  // 55 characters exactly; a longer header is not even scanned.
  if (header === undefined || header.length > 64) return undefined;
  const m = TRACEPARENT.exec(header.trim());
  if (!m) return undefined;
  const [, traceId, spanId, flags] = m as unknown as [string, string, string, string];
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  return { traceId, spanId, sampled: (Number.parseInt(flags, 16) & 1) === 1 };
}

function parseCloudTrace(header: string | undefined): Trace | undefined {
  // 32 + 1 + 20 + 4 characters at most.
  if (!header || header.length > 64) return undefined;
  const m = CLOUD_TRACE.exec(header.trim());
  if (!m) return undefined;
  const [, id, span, sampled] = m;
  const traceId = (id as string).toLowerCase();
  if (traceId === ZERO_TRACE) return undefined;
  const trace: Trace = { traceId };
  if (span !== undefined) {
    const n = BigInt(span);
    if (n > UINT64_MAX) return undefined;
    if (n > 0n) trace.spanId = n.toString(16).padStart(16, '0');
  }
  if (sampled !== undefined) trace.sampled = sampled === '1';
  return trace;
}
