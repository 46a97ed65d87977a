import { describe, expect, it } from 'vitest';
import { CircuitBreaker } from '../../shared/circuit-breaker.js';
import { Throttle } from '../../shared/throttle.js';

describe('CircuitBreaker', () => {
  it('opens after consecutive failures, lets one trial through later, and closes on success', () => {
    let t = 0;
    const b = new CircuitBreaker({ failureThreshold: 2, openMs: 1000, now: () => t });
    expect(b.allow()).toBe(true);
    b.failure();
    expect(b.state).toBe('closed');
    expect(b.failure()).toBe(true);
    expect(b.allow()).toBe(false);
    t = 1000;
    expect(b.state).toBe('half-open');
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false); // one trial at a time
    b.failure();
    expect(b.state).toBe('open');
    t = 2000;
    expect(b.allow()).toBe(true);
    b.success();
    expect(b.state).toBe('closed');
  });
});

describe('Throttle', () => {
  it('lets one event per interval through and counts the rest', () => {
    let t = 0;
    const th = new Throttle(1000, () => t);
    expect(th.take('a')).toBe(0);
    expect(th.take('a')).toBeUndefined();
    expect(th.take('b')).toBe(0);
    expect(th.take('a')).toBeUndefined();
    t = 1000;
    expect(th.take('a')).toBe(2);
  });
});
