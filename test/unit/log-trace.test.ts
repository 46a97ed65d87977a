import { describe, expect, it } from 'vitest';
import { createLogger, LABELS, REPORTED_ERROR_EVENT, traceFields } from '../../shared/log.js';

const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

describe('trace headers are validated and bounded before they reach a line', () => {
  it('X-Cloud-Trace-Context: 32 hex digits, a span id that fits 64 bits, an optional ;o=0|1', () => {
    expect(traceFields(`${TRACE}/18446744073709551615;o=0`, 'acme')).toEqual({
      'logging.googleapis.com/trace': `projects/acme/traces/${TRACE}`,
      'logging.googleapis.com/spanId': 'ffffffffffffffff',
      'logging.googleapis.com/trace_sampled': false,
    });
    expect(traceFields(TRACE.toUpperCase(), undefined)).toEqual({ trace: TRACE });
    for (const bad of [
      `${TRACE}/${'9'.repeat(5000)}`, // the 5000-digit span id the review sent
      `${TRACE}/18446744073709551616`, // 2^64
      `${TRACE}/1;o=2`,
      `${TRACE}x/1`,
      `${TRACE.slice(1)}/1`,
      `${'0'.repeat(32)}/1`,
      `${TRACE}/-1`,
      `${TRACE}/1;o=1${' '.repeat(100)}x`,
      `${TRACE}/1\n{"severity":"CRITICAL"}`,
    ]) {
      expect(traceFields(bad, 'acme'), bad.slice(0, 60)).toEqual({});
    }
    // Span 0 is no span: the trace stays, the span goes.
    expect(traceFields(`${TRACE}/0;o=1`, 'acme')).toEqual({
      'logging.googleapis.com/trace': `projects/acme/traces/${TRACE}`,
      'logging.googleapis.com/trace_sampled': true,
    });
  });

  it('W3C traceparent: version 00, non-zero ids, flags; preferred over X-Cloud-Trace-Context', () => {
    const other = 'a'.repeat(32);
    expect(traceFields(`${other}/1;o=0`, 'acme', `00-${TRACE}-00f067aa0ba902b7-01`)).toEqual({
      'logging.googleapis.com/trace': `projects/acme/traces/${TRACE}`,
      'logging.googleapis.com/spanId': '00f067aa0ba902b7',
      'logging.googleapis.com/trace_sampled': true,
    });
    expect(traceFields(undefined, 'acme', `00-${TRACE}-00f067aa0ba902b7-00`)).toMatchObject({
      'logging.googleapis.com/trace_sampled': false,
    });
    for (const bad of [
      `01-${TRACE}-00f067aa0ba902b7-01`,
      `ff-${TRACE}-00f067aa0ba902b7-01`,
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`,
      `00-${TRACE}-${'0'.repeat(16)}-01`,
      `00-${TRACE.toUpperCase()}-00f067aa0ba902b7-01`,
      `00-${TRACE}-00f067aa0ba902b7-1`,
      `00-${TRACE}-00f067aa0ba902b7-01-${'x'.repeat(5000)}`,
    ]) {
      expect(traceFields(undefined, 'acme', bad), bad.slice(0, 60)).toEqual({});
      // An invalid traceparent leaves a valid X-Cloud-Trace-Context in charge.
      expect(traceFields(`${other}/1`, 'acme', bad)['logging.googleapis.com/trace']).toBe(
        `projects/acme/traces/${other}`,
      );
    }
  });
});

describe('labels and Error Reporting', () => {
  it('adds a line’s labels to its logger’s, and marks ERROR and CRITICAL lines as error events', () => {
    const lines: Record<string, unknown>[] = [];
    const log = createLogger({
      write: (l) => lines.push(JSON.parse(l) as Record<string, unknown>),
      base: { [LABELS]: { function: 'token' } },
      serviceContext: { service: 'token-broker', version: 'rev-7' },
    });
    log.log('INFO', 'token served', { [LABELS]: { operation: 'token' } });
    log.log('ERROR', 'request failed', {
      [LABELS]: { operation: 'token' },
      audit: { internal: { message: 'boom with Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln inside' } },
    });
    log.child({ requestId: 'r' }).log('CRITICAL', 'config', {});
    expect(lines[0]).toMatchObject({ [LABELS]: { function: 'token', operation: 'token' } });
    expect(lines[0]!['@type']).toBeUndefined();
    expect(lines[0]!['serviceContext']).toBeUndefined();
    expect(lines[1]).toMatchObject({
      severity: 'ERROR',
      message: 'request failed',
      '@type': REPORTED_ERROR_EVENT,
      serviceContext: { service: 'token-broker', version: 'rev-7' },
      [LABELS]: { function: 'token', operation: 'token' },
    });
    expect(JSON.stringify(lines[1])).not.toContain('eyJzdWIiOiIxIn0');
    expect(lines[2]).toMatchObject({
      '@type': REPORTED_ERROR_EVENT,
      requestId: 'r',
      [LABELS]: { function: 'token' },
    });
  });
});
