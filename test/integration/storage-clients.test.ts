import { createServer, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { BrokerAuthClient } from '../../packages/client/src/auth-client.js';
import { BrokerClient } from '../../packages/client/src/index.js';
import { importStorage8, storage8Available } from '../support/storage8.js';
import { BILLING, examplePolicy, REPORTING, type Stack, startStack } from './support/stack.js';

// BrokerAuthClient in real @google-cloud/storage clients: 7 (google-auth-library 9, which copies
// the headers with Object.assign) and 8 (google-auth-library 11, which reads them as Headers).
// Each client sends its requests to a local server that records the headers that arrived.

const STORAGE_SCOPE = 'https://www.googleapis.com/auth/devstorage.read_write';

interface Recorded {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: string;
}

let stack: Stack;
let broker: InProcessBroker;
let gcs: Server;
let gcsUrl: string;
const recorded: Recorded[] = [];

/** Just enough of the Cloud Storage JSON API: object metadata, a multipart upload, opening a resumable upload. */
function startRecordingGcs(): Promise<Server> {
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x');
      recorded.push({
        method: req.method ?? '',
        path: u.pathname,
        headers: req.headers,
        body: Buffer.concat(chunks).toString(),
      });
      const object = {
        kind: 'storage#object',
        bucket: 'bkt',
        name: 'report.csv',
        size: '5',
        generation: '1',
      };
      res.setHeader('content-type', 'application/json');
      if (u.pathname === '/upload/storage/v1/b/bkt/o' && u.searchParams.get('uploadType') === 'resumable') {
        res.setHeader('location', `${gcsUrl}/upload/session/1`);
        res.end('{}');
      } else res.end(JSON.stringify(object));
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r(server)));
}

beforeAll(async () => {
  const policy = examplePolicy();
  (policy['grants'] as unknown[]).push({
    callers: [BILLING],
    serviceAccounts: [REPORTING],
    scopes: [STORAGE_SCOPE],
  });
  stack = await startStack({ policy });
  broker = await stack.serveBroker('broker');
  gcs = await startRecordingGcs();
  gcsUrl = `http://127.0.0.1:${(gcs.address() as AddressInfo).port}`;
});
afterAll(async () => {
  gcs?.close();
  await stack?.close();
});

/** The brokered token, checked with the Google stand-in's tokeninfo, for the account asked. */
async function brokeredToken(client: BrokerClient): Promise<string> {
  const { token } = await client.accessToken({ serviceAccount: REPORTING, scopes: [STORAGE_SCOPE] });
  const info = (await (await fetch(`${stack.google.tokeninfoUrl}?access_token=${token}`)).json()) as {
    email?: string;
    scope?: string;
  };
  expect(info).toMatchObject({ email: REPORTING, scope: STORAGE_SCOPE });
  return token;
}

type StorageLike = InstanceType<typeof import('storage7').Storage>;

async function driveStorage(pkg: 'storage7' | 'storage8'): Promise<void> {
  const client = new BrokerClient({ url: broker.url, idToken: () => stack.callerToken(BILLING) });
  const authClient = new BrokerAuthClient(client, { serviceAccount: REPORTING, scopes: [STORAGE_SCOPE] });
  const options = {
    projectId: 'acme',
    apiEndpoint: gcsUrl,
    useAuthWithCustomEndpoint: true,
    retryOptions: { autoRetry: false },
  };
  // Each Storage here has its own google-auth-library copy (9, 11), whose AuthClient type is not the
  // one BrokerAuthClient extends (10): a cast, for TypeScript only. Where npm dedupes the peer, none is needed.
  const storage: StorageLike =
    pkg === 'storage7'
      ? new (await import('storage7')).Storage({ ...options, authClient: authClient as never })
      : (new (await importStorage8()).Storage({
          ...options,
          authClient: authClient as never,
        }) as unknown as StorageLike);
  recorded.length = 0;
  const file = storage.bucket('bkt').file('report.csv');
  const [metadata] = await file.getMetadata();
  expect(metadata.name).toBe('report.csv');
  await file.save('a,b,c', { resumable: false, validation: false });
  // A resumable session is opened through the auth client's own `request` (the data that follows
  // goes to the session URI, which needs no credential).
  const [session] = await file.createResumableUpload();
  expect(session).toBe(`${gcsUrl}/upload/session/1`);

  const token = await brokeredToken(client);
  const paths = recorded.map((r) => `${r.method} ${r.path}`);
  expect(paths).toEqual([
    'GET /storage/v1/b/bkt/o/report.csv',
    'POST /upload/storage/v1/b/bkt/o',
    'POST /upload/storage/v1/b/bkt/o',
  ]);
  // Every request that arrived carried the brokered token, and nothing else as a credential.
  for (const r of recorded) {
    expect(r.headers.authorization, `${r.method} ${r.path}`).toBe(`Bearer ${token}`);
    expect(r.headers['x-serverless-authorization']).toBeUndefined();
  }
  expect(recorded[1]?.body).toContain('a,b,c');
}

describe('BrokerAuthClient in @google-cloud/storage', () => {
  it('Storage 7 (google-auth-library 9): every request arrives with the brokered token', async () => {
    await driveStorage('storage7');
  });

  // Storage 8.3+ (google-auth-library 11) declares Node >= 22: it runs in the Node 22 run (test/support/storage8.ts).
  it.runIf(storage8Available())(
    'Storage 8 (google-auth-library 11): every request arrives with the brokered token',
    async () => {
      await driveStorage('storage8');
    },
  );
});
