import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InProcessBroker } from '../../infra/in-process-broker.js';
import { main } from '../../packages/client/src/cli/broker-token.js';
import { pythonAvailable, runPython } from '../support/python.js';
import { BILLING, examplePolicy, REPORTING, type Stack, SYNC_JOB, startStack } from './support/stack.js';

// A program that names no scopes. Python's google-auth then sends a token-exchange form with no
// `scope` at all (Node's google-auth-library sends cloud-platform): the broker's sts door asks
// cloud-platform, as Google's STS does, and the policy decides as for any request. Through the real
// door of a broker built in process, with a recorder in front of it that keeps the forms the library sent.

const CLOUD_PLATFORM = 'https://www.googleapis.com/auth/cloud-platform';
const python = pythonAvailable();
let stack: Stack;
let broker: InProcessBroker;
let recorder: Server;
let recorderUrl: string;
const forms: URLSearchParams[] = [];
let dir: string;

beforeAll(async () => {
  const policy = examplePolicy();
  (policy['grants'] as unknown[]).push({
    callers: [BILLING],
    serviceAccounts: [REPORTING],
    scopes: [CLOUD_PLATFORM],
  });
  stack = await startStack({ policy });
  broker = await stack.serveBroker('broker');
  recorder = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      forms.push(new URLSearchParams(body));
      void fetch(`${broker.url}${req.url}`, {
        method: 'POST',
        headers: { 'Content-Type': req.headers['content-type'] ?? '' },
        body,
      }).then(async (answer) => {
        res.writeHead(answer.status, { 'Content-Type': 'application/json' });
        res.end(await answer.text());
      });
    });
  });
  await new Promise<void>((r) => recorder.listen(0, '127.0.0.1', r));
  recorderUrl = `http://127.0.0.1:${(recorder.address() as AddressInfo).port}`;
  dir = mkdtempSync(join(tmpdir(), 'sts-default-scope-'));
});
afterAll(async () => {
  recorder?.close();
  await stack?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A credential file from `broker-token credential-config`, the caller's ID token in a file beside it. */
async function credentialFile(caller: string): Promise<string> {
  const tokenFile = join(dir, `${caller}.token`);
  writeFileSync(tokenFile, await stack.callerToken(caller));
  const path = join(dir, `${caller}.json`);
  const code = await main(
    [
      'credential-config',
      '--url',
      recorderUrl,
      REPORTING,
      '--credential-source-file',
      tokenFile,
      '--output-file',
      path,
    ],
    {},
    () => {},
    () => {},
  );
  expect(code).toBe(0);
  return path;
}

const NO_SCOPES = `
import json
import google.auth
from google.auth.transport.requests import Request
credentials, _ = google.auth.default()
try:
    credentials.refresh(Request())
    print(json.dumps({"token": credentials.token}))
except Exception as e:
    print(json.dumps({"error": str(e)}))
`;

describe.skipIf(!python)('Python google-auth with no scopes', () => {
  it('google.auth.default() then refresh(): no scope on the wire, a cloud-platform token back, allowed by the grant', async () => {
    forms.length = 0;
    const out = JSON.parse(
      await runPython(NO_SCOPES, { GOOGLE_APPLICATION_CREDENTIALS: await credentialFile(BILLING) }),
    ) as {
      token?: string;
    };
    expect(forms).toHaveLength(1);
    expect(forms[0]?.has('scope')).toBe(false);
    expect(forms[0]?.get('audience')).toBe(`//token-broker/serviceAccounts/${REPORTING}`);
    expect(out.token).toMatch(/^ya29\./);
    const info = await fetch(`${stack.google.tokeninfoUrl}?access_token=${out.token}`);
    expect(await info.json()).toMatchObject({ email: REPORTING, scope: CLOUD_PLATFORM });
    await expect
      .poll(() =>
        broker.lines.some(
          (l) =>
            l.includes('"door":"sts"') &&
            l.includes(`"scopes":["${CLOUD_PLATFORM}"]`) &&
            l.includes('"decision":"allow"'),
        ),
      )
      .toBe(true);
  });

  it('a caller whose grants lack cloud-platform is refused as usual: invalid_target, naming the caller', async () => {
    const out = JSON.parse(
      await runPython(NO_SCOPES, { GOOGLE_APPLICATION_CREDENTIALS: await credentialFile(SYNC_JOB) }),
    ) as {
      error?: string;
    };
    expect(out.error).toContain('invalid_target');
    expect(out.error).toContain(`does not allow ${SYNC_JOB} this request`);
  });
});
