import { describe, expect, it } from 'vitest';
import { backoffDelay, isRetryableStatus, parseRetryAfter } from '../../shared/retry.js';

describe('backoff', () => {
  it('grows exponentially with equal jitter, never above the cap', () => {
    const o = (r: number) => ({ baseMs: 100, capMs: 1000, random: () => r });
    expect([0, 1, 2, 3, 4].map((a) => backoffDelay(a, o(0)))).toEqual([50, 100, 200, 400, 500]);
    expect([0, 1, 2, 3, 4].map((a) => backoffDelay(a, o(1)))).toEqual([100, 200, 400, 800, 1000]);
    for (let a = 0; a < 30; a++) expect(backoffDelay(a, o(Math.random()))).toBeLessThanOrEqual(1000);
  });
  it('parses Retry-After seconds and HTTP dates', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:27:00 GMT', now)).toBe(0);
    for (const bad of ['-1', '1.5', 'soon', '', null, undefined])
      expect(parseRetryAfter(bad, now)).toBeUndefined();
  });
  it('retries only 429 and 5xx', () => {
    expect([400, 401, 403, 404, 429, 500, 503, 599].map(isRetryableStatus)).toEqual([
      false,
      false,
      false,
      false,
      true,
      true,
      true,
      true,
    ]);
  });
});
