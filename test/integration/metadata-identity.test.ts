/**
 * The broker's own identity (the adapter over the metadata server) against
 * the metadata stand-in, on a clock the test moves: an outage costs keyless
 * minting nothing while the token in hand has more than a minute left.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { MetadataServer } from '../../infra/google/metadata.js';
import { type GoogleStandIn, startGoogleStandIn } from '../../infra/google/server.js';
import { createMetadataIdentity } from '../../shared/adapters/metadata-identity.js';
import { BrokerError } from '../../shared/errors.js';

let google: GoogleStandIn;
let metadata: MetadataServer;

beforeAll(async () => {
  google = await startGoogleStandIn();
  metadata = await google.startMetadataServer({ email: 'token-broker@acme.iam.gserviceaccount.com' });
});
afterAll(async () => google?.close());

describe('the broker identity while the metadata server is down', () => {
  it('uses the token in hand until a minute before it expires, without waiting for the failed refresh', async () => {
    let clock = Date.now();
    const identity = createMetadataIdentity({
      host: metadata.host,
      refreshSkewSeconds: 300,
      now: () => clock,
    });
    const held = await identity.accessToken();
    const lifetimeMs = 3600_000; // what the stand-in's tokens live, like GCE's

    await metadata.setDown(true);
    try {
      // Inside the skew, four minutes left: the token in hand, at once, while a refresh fails in the background.
      clock += lifetimeMs - 240_000;
      const started = performance.now();
      expect(await identity.accessToken()).toBe(held);
      expect(performance.now() - started).toBeLessThan(50);
      // 90 s left: still.
      clock += 240_000 - 90_000;
      expect(await identity.accessToken()).toBe(held);
      // 30 s left: the outage shows.
      clock += 60_000;
      const err = await identity.accessToken().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(BrokerError);
      expect((err as BrokerError).code).toBe('upstream_unavailable');
    } finally {
      await metadata.setDown(false);
    }
    // Back up: fetched again (the server hands out the same token while, on its own clock, it has life left).
    const asked = metadata.stats.tokenRequests;
    expect(typeof (await identity.accessToken())).toBe('string');
    expect(metadata.stats.tokenRequests).toBe(asked + 1);
  });
});
