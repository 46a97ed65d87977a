/**
 * JWT assertions signed per second, on all cores, by signer processes that
 * start together and sign for a fixed time. Signers:
 *   raw     node:crypto RS256 with a KeyObject imported once, synchronous:
 *           one process per core (the limit)
 *   broker  the broker's path: jose CompactSign with a key imported once, in
 *           one process, as one broker instance runs. jose signs through
 *           WebCrypto, which runs the RSA operation on libuv's thread pool,
 *           so one JavaScript thread keeps `inFlight` signatures going and
 *           uses every core, as the broker does when requests for different
 *           tokens arrive together.
 *   gal     google-auth-library's JWT signing path (JWTAccess → jws, PEM
 *           parsed per signature): one process per core
 */

import { execFile } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { JWTAccess } from 'google-auth-library';
import { ASSERTION_HEADER, accessTokenAssertionClaims } from '../../shared/jwt/claims.js';
import { importSigningKey, signJwt } from '../../shared/jwt/sign.js';
import type { ServiceAccountKey } from '../../shared/service-account-key.js';

export type Signer = 'raw' | 'broker' | 'gal';

const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');

interface Job {
  signer: Signer;
  pem: string;
  ms: number;
  inFlight: number;
  /** Epoch milliseconds when every process starts signing. */
  at: number;
}

async function runJob(job: Job): Promise<number> {
  const { signer, pem, ms, inFlight } = job;
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
      issuer: key.clientEmail,
      scopes: ['https://www.googleapis.com/auth/cloud-platform'],
      tokenUrl: 'https://oauth2.googleapis.com/token',
      nowMs: Date.now(),
    });
  let n = 0;
  const signingKey = signer === 'broker' ? await importSigningKey(pem) : undefined;
  const keyObject = createPrivateKey(pem);
  const access = new JWTAccess(key.clientEmail, pem);
  await new Promise((r) => setTimeout(r, Math.max(0, job.at - Date.now())));
  const end = Date.now() + ms;
  if (signer === 'raw') {
    while (Date.now() < end) {
      const input = `${b64(ASSERTION_HEADER)}.${b64(claims())}`;
      sign('sha256', Buffer.from(input), keyObject).toString('base64url');
      n++;
    }
  } else if (signingKey !== undefined) {
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (Date.now() < end) {
          await signJwt(ASSERTION_HEADER, claims(), signingKey);
          n++;
        }
      }),
    );
  } else {
    while (Date.now() < end) {
      // A new audience each time: JWTAccess caches per URL, and we measure its signing path.
      await access.getRequestHeaders(`https://svc${n}.googleapis.com/`);
      n++;
    }
  }
  return n;
}

/** Signs per second with `processes` processes (default: one per core), each with `inFlight` signatures going, for `ms`. */
export async function signRate(
  signer: Signer,
  pem: string,
  ms: number,
  options: { processes?: number; inFlight?: number; env?: Record<string, string> } = {},
): Promise<number> {
  const job: Job = { signer, pem, ms, inFlight: options.inFlight ?? 1, at: Date.now() + 1000 };
  const counts = await Promise.all(
    Array.from({ length: options.processes ?? cpus().length }, () =>
      promisify(execFile)(process.execPath, [fileURLToPath(import.meta.url)], {
        env: { ...process.env, ...options.env, BENCH_SIGN_JOB: JSON.stringify(job) },
      }).then(({ stdout }) => Number(stdout.trim())),
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

const job = process.env['BENCH_SIGN_JOB'];
if (job !== undefined) console.log(await runJob(JSON.parse(job) as Job));
