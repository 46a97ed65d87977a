/**
 * JWT assertions signed per second, on both cores: one worker thread per
 * core runs one signer for a fixed time. Signers:
 *   raw     node:crypto RS256 with a KeyObject imported once (the limit)
 *   broker  the broker's path: jose CompactSign with a key imported once
 *   gal     google-auth-library's JWT signing path (JWTAccess → jws, PEM parsed per signature)
 */
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { cpus } from 'node:os';
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { JWTAccess } from 'google-auth-library';
import { ASSERTION_HEADER, accessTokenAssertionClaims } from '../../shared/jwt/claims.js';
import { importSigningKey, signJwt } from '../../shared/jwt/sign.js';
import type { ServiceAccountKey } from '../../shared/service-account-key.js';

export type Signer = 'raw' | 'broker' | 'gal';

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

async function runWorker(): Promise<void> {
  const { signer, pem, ms } = workerData as { signer: Signer; pem: string; ms: number };
  const key: ServiceAccountKey = {
    type: 'service_account',
    projectId: 'bench',
    privateKeyId: 'k',
    privateKey: pem,
    clientEmail: 'bench@bench.iam.gserviceaccount.com',
    clientId: '1',
    tokenUri: undefined,
  };
  const claims = () =>
    accessTokenAssertionClaims({
      key,
      scopes: ['https://www.googleapis.com/auth/cloud-platform'],
      tokenUrl: 'https://oauth2.googleapis.com/token',
      nowMs: Date.now(),
    });
  let n = 0;
  const end = Date.now() + ms;
  if (signer === 'raw') {
    const keyObject = createPrivateKey(pem);
    while (Date.now() < end) {
      const input = `${b64(ASSERTION_HEADER)}.${b64(claims())}`;
      sign('sha256', Buffer.from(input), keyObject).toString('base64url');
      n++;
    }
  } else if (signer === 'broker') {
    const signingKey = await importSigningKey(pem);
    while (Date.now() < end) {
      await signJwt(ASSERTION_HEADER, claims(), signingKey);
      n++;
    }
  } else {
    const access = new JWTAccess(key.clientEmail, pem);
    while (Date.now() < end) {
      // A new audience each time: JWTAccess caches per URL, and we measure its signing path.
      await access.getRequestHeaders(`https://svc${n}.googleapis.com/`);
      n++;
    }
  }
  parentPort?.postMessage(n);
}

/** Signs per second with `threads` workers (default: one per core) for `ms`. */
export async function signRate(
  signer: Signer,
  pem: string,
  ms: number,
  threads = cpus().length,
): Promise<number> {
  const counts = await Promise.all(
    Array.from(
      { length: threads },
      () =>
        new Promise<number>((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: { signer, pem, ms } });
          w.once('message', resolve);
          w.once('error', reject);
        }),
    ),
  );
  return (counts.reduce((a, b) => a + b, 0) * 1000) / ms;
}

/** A fresh RSA 2048 key in PKCS#8 PEM, as Google issues them. */
export function benchKey(): string {
  return generateKeyPairSync('rsa', { modulusLength: 2048 })
    .privateKey.export({ type: 'pkcs8', format: 'pem' })
    .toString();
}

if (!isMainThread) await runWorker();
