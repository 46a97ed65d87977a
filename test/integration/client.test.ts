import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { BrokerAuthClient } from '../../packages/client/src/auth-client.js';
import { main as cli } from '../../packages/client/src/cli/broker-token.js';
import { BrokerClient, BrokerClientError } from '../../packages/client/src/index.js';
import {
  BIGQUERY,
  BILLING,
  BLUE,
  DRIVE,
  PLATFORM,
  REPORTING,
  type Stack,
  startStack,
} from './support/stack.js';

let stack: Stack;
let broker: InProcessBroker;
const sent: Array<{ url: string; headers: Headers }> = [];

beforeAll(async () => {
  stack = await startStack();
  broker = await stack.serveBroker('broker');
});
afterAll(async () => stack?.close());

const client = (caller: string) =>
  new BrokerClient({
    url: broker.url,
    idToken: () => stack.callerToken(caller),
    fetch: (input, init) => {
      sent.push({ url: String(input), headers: new Headers(init?.headers) });
      return fetch(input, init);
    },
  });

describe('BrokerClient', () => {
  it('gets access tokens, sends the ID token for Cloud Run IAM and for the broker, and keeps tokens until the skew', async () => {
    const c = client(BILLING);
    sent.length = 0;
    const [a, b] = await Promise.all([
      c.accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] }),
      c.accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY, BIGQUERY] }),
    ]);
    expect(a.token).toMatch(/^ya29\./);
    expect(b).toBe(a);
    expect(sent).toHaveLength(1);
    const h = sent[0]!.headers;
    expect(h.get('authorization')).toMatch(/^Bearer ey/);
    expect(h.get('x-serverless-authorization')).toBe(h.get('authorization'));
    await c.accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] });
    expect(sent).toHaveLength(1);
    expect(a.expiresAt).toBeGreaterThan(Date.now() + 3000_000);
  });

  it('gets JWTs and ID tokens for a tenant', async () => {
    const c = client(PLATFORM);
    const jwt = await c.jwt({ tenant: 'blue', audience: 'https://drive.googleapis.com/' });
    expect(JSON.parse(Buffer.from(jwt.token.split('.')[1]!, 'base64url').toString())).toMatchObject({
      iss: BLUE,
    });
    const id = await c.idToken({ tenant: 'blue', audience: 'https://drive.googleapis.com/' });
    expect(id.token.split('.')).toHaveLength(3);
  });

  it('turns broker errors into typed errors', async () => {
    const err = await client(BILLING)
      .accessToken({ tenant: 'blue', scopes: [DRIVE] })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BrokerClientError);
    expect(err).toMatchObject({ code: 'access_denied', status: 403, retryable: false });
    const down = new BrokerClient({ url: 'http://127.0.0.1:1', idToken: async () => 'x' });
    expect(
      await down.accessToken({ serviceAccount: REPORTING, scopes: [BIGQUERY] }).catch((e: unknown) => e),
    ).toMatchObject({
      code: 'network_error',
      retryable: true,
    });
  });
});

describe('BrokerAuthClient (google-auth-library)', () => {
  it('authorises a real client-library request with a broker token', async () => {
    const auth = new BrokerAuthClient(client(BILLING), { serviceAccount: REPORTING, scopes: [BIGQUERY] });
    const res = await auth.request<{ email: string }>({ url: `${stack.google.url}/oauth2/v3/userinfo` });
    expect(res.data.email).toBe(REPORTING);
    expect((await auth.getRequestHeaders()).get('authorization')).toMatch(/^Bearer ya29\./);
  });
});

describe('broker-token CLI', () => {
  const run = async (args: string[], caller = BILLING) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await cli(
      args,
      { BROKER_ID_TOKEN: await stack.callerToken(caller) },
      (s) => out.push(s),
      (s) => err.push(s),
    );
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  it('prints an access token, or the JSON answer', async () => {
    const plain = await run(['--url', broker.url, '--service-account', REPORTING, '--scope', BIGQUERY]);
    expect(plain).toMatchObject({ code: 0, err: '' });
    expect(plain.out).toMatch(/^ya29\.\S+$/);
    const json = await run(
      [
        '--url',
        broker.url,
        '--tenant',
        'blue',
        '--jwt',
        '--audience',
        'https://drive.googleapis.com/',
        '--json',
      ],
      PLATFORM,
    );
    expect(JSON.parse(json.out)).toMatchObject({ token: expect.stringMatching(/^ey/) });
  });

  it('speaks gcloud: print-access-token --impersonate-service-account --scopes, print-identity-token --audiences', async () => {
    const access = await run([
      'print-access-token',
      '--url',
      broker.url,
      '--impersonate-service-account',
      REPORTING,
      '--scopes',
      BIGQUERY,
    ]);
    expect(access).toMatchObject({ code: 0, err: '' });
    const info = (await (await fetch(`${stack.google.tokeninfoUrl}?access_token=${access.out}`)).json()) as {
      email?: string;
      scope?: string;
    };
    expect(info).toMatchObject({ email: REPORTING, scope: BIGQUERY });
    const id = await run(
      [
        'print-identity-token',
        '--url',
        broker.url,
        '--tenant',
        'blue',
        '--audiences',
        'https://drive.googleapis.com/',
        '--include-email',
      ],
      PLATFORM,
    );
    expect(id.code).toBe(0);
    expect(JSON.parse(Buffer.from(id.out.split('.')[1]!, 'base64url').toString())).toMatchObject({
      aud: 'https://drive.googleapis.com/',
      email: BLUE,
    });
    // The default scope, cloud-platform, is not granted to this caller: the broker's refusal, exit 1.
    const denied = await run([
      'print-access-token',
      '--url',
      broker.url,
      '--impersonate-service-account',
      REPORTING,
    ]);
    expect(denied.code).toBe(1);
    expect(denied.err).toMatch(/^broker-token: access_denied: /);
  });

  it("exits non-zero with the broker's error on stderr", async () => {
    const denied = await run(['--url', broker.url, '--service-account', REPORTING, '--scope', DRIVE]);
    expect(denied.code).toBe(1);
    expect(denied.out).toBe('');
    expect(denied.err).toMatch(/^broker-token: access_denied: /);
    expect((await run(['--service-account', REPORTING])).code).toBe(2);
  });
});

describe('the example delegated job', () => {
  it('gets a domain-wide-delegated token from the broker and calls a Google API with it', async () => {
    const functions = await import('@google-cloud/functions-framework');
    const { getTestServer } = await import('@google-cloud/functions-framework/testing');
    const { createDelegatedJob } = await import('../../functions/examples/delegated-job.js');
    functions.http(
      'delegatedJobUnderTest',
      createDelegatedJob({
        brokerUrl: `${broker.url}/token`,
        brokerAudience: 'unused',
        serviceAccount: REPORTING,
        subject: 'alice@acme.com',
        scopes: ['https://www.googleapis.com/auth/calendar.readonly'],
        apiUrl: `${stack.google.url}/oauth2/v3/userinfo`,
        idToken: () => stack.callerToken('sync-job@acme.iam.gserviceaccount.com'),
      }),
    );
    const server = getTestServer('delegatedJobUnderTest');
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as { port: number };
      const res = await fetch(`http://127.0.0.1:${port}/`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{}',
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ api_status: 200, subject: 'alice@acme.com' });
    } finally {
      server.close();
    }
  });
});
