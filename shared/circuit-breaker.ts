/** Options of a circuit breaker. */
export interface CircuitBreakerOptions {
  /** Consecutive failures that open the circuit. */
  failureThreshold?: number;
  /** How long the circuit stays open before one trial call. */
  openMs?: number;
  now?: () => number;
}

/** Circuit states: closed (calls flow), open (calls skipped), half-open (one trial call in flight). */
export type CircuitState = 'closed' | 'open' | 'half-open';

/**
 * Stops calls to a dependency that keeps failing, and tries again later:
 * after `failureThreshold` consecutive failures it opens for `openMs`, then
 * lets one trial call through; its success closes the circuit, its failure
 * opens it again.
 */
export class CircuitBreaker {
  readonly #threshold: number;
  readonly #openMs: number;
  readonly #now: () => number;
  #failures = 0;
  #openedAt = 0;
  #state: CircuitState = 'closed';
  #trialInFlight = false;

  constructor(options: CircuitBreakerOptions = {}) {
    this.#threshold = options.failureThreshold ?? 3;
    this.#openMs = options.openMs ?? 5000;
    this.#now = options.now ?? Date.now;
  }

  get state(): CircuitState {
    if (this.#state === 'open' && this.#now() - this.#openedAt >= this.#openMs) return 'half-open';
    return this.#state;
  }

  /** Whether a call may go through now. In half-open state only one trial call at a time does. */
  allow(): boolean {
    const state = this.state;
    if (state === 'closed') return true;
    if (state === 'open' || this.#trialInFlight) return false;
    this.#trialInFlight = true;
    return true;
  }

  /** Records a call that worked. */
  success(): void {
    this.#failures = 0;
    this.#trialInFlight = false;
    this.#state = 'closed';
  }

  /** Records a call that failed; returns true when this failure opened the circuit. */
  failure(): boolean {
    this.#trialInFlight = false;
    this.#failures++;
    if (this.#state !== 'closed' || this.#failures >= this.#threshold) {
      const opened = this.#state === 'closed';
      this.#state = 'open';
      this.#openedAt = this.#now();
      return opened;
    }
    return false;
  }
}
