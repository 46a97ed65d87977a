import { generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';

const generate = promisify(generateKeyPair);

/** An RSA-2048 key pair. */
export interface RsaKeyPair {
  privateKey: KeyObject;
  publicKey: KeyObject;
}

/**
 * RSA-2048 key pairs made ahead, in the background, one at a time, and only
 * while someone is expected to take one: a key costs a few hundred
 * milliseconds of CPU, too slow to make inside a request (a client's
 * timeout) and too costly to make for accounts that never sign.
 */
export class RsaKeyPool {
  readonly #ready: RsaKeyPair[] = [];
  readonly #waiting: Array<{ resolve: (k: RsaKeyPair) => void; reject: (e: unknown) => void }> = [];
  #expected = 0;
  #making = false;

  /** @param ahead How many keys to hold ready at most. */
  constructor(readonly ahead = 2) {}

  /** Someone will take a key later (a keyless account was registered): make one ahead. */
  expect(): void {
    this.#expected++;
    this.#fill();
  }

  /** A key pair: a ready one, or the next one made. `expected`: the taker was announced by {@link expect}. */
  take(expected: boolean): Promise<RsaKeyPair> {
    if (expected && this.#expected > 0) this.#expected--;
    const ready = this.#ready.shift();
    const key = ready
      ? Promise.resolve(ready)
      : new Promise<RsaKeyPair>((resolve, reject) => this.#waiting.push({ resolve, reject }));
    this.#fill();
    return key;
  }

  #fill(): void {
    const wanted = this.#waiting.length + Math.min(this.ahead, this.#expected) - this.#ready.length;
    if (this.#making || wanted <= 0) return;
    this.#making = true;
    generate('rsa', { modulusLength: 2048 }).then(
      (key) => {
        this.#making = false;
        const taker = this.#waiting.shift();
        if (taker) taker.resolve(key);
        else this.#ready.push(key);
        this.#fill();
      },
      (err: unknown) => {
        this.#making = false;
        for (const taker of this.#waiting.splice(0)) taker.reject(err);
      },
    );
  }
}
