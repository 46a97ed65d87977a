import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SecretManagerStandIn, startSecretManagerStandIn } from '../../infra/secret-manager/server.js';
import { createFileSecretSource } from '../../shared/adapters/file-secrets.js';
import { createSecretManagerSource } from '../../shared/adapters/secret-manager.js';
import { createSecretRouter } from '../../shared/adapters/secret-source.js';
import { BrokerError } from '../../shared/errors.js';

const PAYLOAD =
  '{"private_key":"-----BEGIN PRIVATE KEY-----\\nSECRET-MATERIAL\\n-----END PRIVATE KEY-----\\n"}';
let sm: SecretManagerStandIn;
let v1: string;
let v2: string;
let loads = 0;
const source = (timeoutMs = 2000) =>
  createSecretManagerSource({
    emulatorHost: sm.host,
    timeoutMs,
    loadModule: () => {
      loads++;
      return import('@google-cloud/secret-manager');
    },
  });

beforeAll(async () => {
  sm = await startSecretManagerStandIn();
  v1 = sm.put('projects/acme/secrets/key', 'first');
  v2 = sm.put('projects/acme/secrets/key', PAYLOAD);
});
afterAll(async () => sm?.close());

async function failure(p: Promise<unknown>): Promise<BrokerError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BrokerError);
  expect(String((err as Error).message)).not.toContain('SECRET-MATERIAL');
  expect(JSON.stringify(err)).not.toContain('SECRET-MATERIAL');
  return err as BrokerError;
}

describe('Secret Manager through the official client over plaintext gRPC', () => {
  it('loads the client only on the first read, and reads latest and numbered versions', async () => {
    const src = source();
    expect(loads).toBe(0);
    expect(new TextDecoder().decode(await src.read('projects/acme/secrets/key/versions/latest'))).toBe(
      PAYLOAD,
    );
    expect(new TextDecoder().decode(await src.read(v1))).toBe('first');
    expect(loads).toBe(1);
    expect(v2).toBe('projects/acme/secrets/key/versions/2');
  });

  it('maps every failure to a clear code, never with the payload', async () => {
    const src = source(800);
    sm.injectFault({ kind: 'status', code: status.UNAVAILABLE }, 3);
    expect(await failure(src.read(v2))).toMatchObject({ code: 'upstream_unavailable', retryAfterSeconds: 5 });
    sm.reset();
    sm.injectFault({ kind: 'delay', ms: 1500 }, 3);
    const started = Date.now();
    expect((await failure(src.read(v2))).code).toBe('upstream_unavailable');
    expect(Date.now() - started).toBeLessThan(2500);
    sm.reset();
    sm.injectFault({ kind: 'status', code: status.PERMISSION_DENIED });
    expect(await failure(src.read(v2))).toMatchObject({
      code: 'upstream_rejected',
      upstreamError: 'PERMISSION_DENIED',
    });
    expect(await failure(src.read('projects/acme/secrets/missing/versions/latest'))).toMatchObject({
      upstreamError: 'NOT_FOUND',
    });
    sm.injectFault({ kind: 'corrupt' });
    expect(await failure(src.read(v2))).toMatchObject({
      code: 'upstream_rejected',
      upstreamError: 'DATA_LOSS',
    });
    const v3 = sm.put('projects/acme/secrets/key', 'third');
    sm.disable(v3);
    expect(await failure(src.read(v3))).toMatchObject({ upstreamError: 'FAILED_PRECONDITION' });
    expect(new TextDecoder().decode(await src.read('projects/acme/secrets/key/versions/latest'))).toBe(
      PAYLOAD,
    );
  });
});

describe('file keys and the router', () => {
  it('reads file: keys relative to the base dir, and routes by reference', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    writeFileSync(join(dir, 'k.json'), 'file-key');
    let created = 0;
    const router = createSecretRouter({
      file: createFileSecretSource({ baseDir: dir }),
      secretManager: () => {
        created++;
        return source();
      },
    });
    expect(new TextDecoder().decode(await router.read('file:k.json'))).toBe('file-key');
    expect(created).toBe(0);
    expect(await failure(router.read('file:nope.json'))).toMatchObject({ upstreamError: 'NOT_FOUND' });
    expect(new TextDecoder().decode(await router.read(v1))).toBe('first');
    expect(created).toBe(1);
    expect(await failure(router.read('s3://bucket/key'))).toMatchObject({ code: 'internal_error' });
  });
});
