import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { GoogleAuth, IdentityPoolClient } from 'google-auth-library';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ProjectedToken } from '../../infra/oidc/kubernetes.js';
import { pythonAvailable, runPython } from '../support/python.js';
import {
  auditLines,
  CLOUD_PLATFORM,
  ETL_MAIN,
  type ExternalStack,
  K8S_AUDIENCE,
  NIGHTLY,
  requestCounts,
  startExternalStack,
} from './support/external.js';
import { AUDIENCE, BIGQUERY, KEYLESS, REPORTING } from './support/stack.js';

// Google's own auth libraries, unchanged, from the two credential files external callers need
// (docs/contract.md, "Both doors"): a GitHub Actions job's (a `url` source at the job's ID-token URL with
// its request-token header, `format: json`) and a Kubernetes workload's (a `file` source at a projected
// service-account token). Each library reads its subject token from the issuer stand-in and exchanges it
// at the broker's sts endpoint; the token it gets is checked at tokeninfo.

const JWT_TYPE = 'urn:ietf:params:oauth:token-type:jwt';
let x: ExternalStack;
let projected: ProjectedToken;

beforeAll(async () => {
  x = await startExternalStack();
  projected = await x.k8s.projectToken(join(x.stack.dir, 'sa', 'token'), {
    namespace: 'batch',
    serviceAccount: 'nightly',
    audiences: [K8S_AUDIENCE],
  });
});
afterAll(async () => x?.stack.close());

/** The GitHub Actions file, as a job writes it with the values of ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN. */
function githubFile(name: string, account: string): string {
  const path = join(x.stack.dir, `${name}.json`);
  const config = {
    type: 'external_account',
    audience: `//token-broker/serviceAccounts/${account}`,
    subject_token_type: JWT_TYPE,
    token_url: `${x.broker.url}/sts`,
    credential_source: {
      url: `${x.github.idTokenRequestUrl}&audience=${encodeURIComponent(AUDIENCE)}`,
      headers: { Authorization: `bearer ${x.github.requestToken}` },
      format: { type: 'json', subject_token_field_name: 'value' },
    },
  };
  // It holds the job's request token: 0600, as credential-config writes it.
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  return path;
}

/** The Kubernetes file: the projected token the kubelet keeps fresh. */
function kubernetesFile(name: string, account: string): string {
  const path = join(x.stack.dir, `${name}.json`);
  const config = {
    type: 'external_account',
    audience: `//token-broker/serviceAccounts/${account}`,
    subject_token_type: JWT_TYPE,
    token_url: `${x.broker.url}/sts`,
    credential_source: { file: projected.path, format: { type: 'text' } },
  };
  writeFileSync(path, JSON.stringify(config), { mode: 0o600 });
  return path;
}

async function tokeninfo(token: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${x.stack.google.tokeninfoUrl}?access_token=${encodeURIComponent(token)}`);
  return (await res.json()) as Record<string, unknown>;
}

describe("google-auth-library (Node) from external callers' credential files", () => {
  it('GitHub Actions: the url source with the request-token header and format json → a token Google accepts', async () => {
    const file = githubFile('gh-node', REPORTING);
    const issued = x.github.stats.tokensIssued;
    const auth = new GoogleAuth({ keyFilename: file, scopes: [BIGQUERY] });
    const client = await auth.getClient();
    expect(client).toBeInstanceOf(IdentityPoolClient);
    const token = (await auth.getAccessToken()) as string;
    expect(await tokeninfo(token)).toMatchObject({ email: REPORTING, scope: BIGQUERY });
    // The library asked the job's token URL once, with the header, for the broker's audience.
    expect(x.github.stats.tokensIssued - issued).toBe(1);
    expect(x.github.stats.refused).toBe(0);
    expect(auditLines(x.broker, ETL_MAIN).at(-1)).toMatchObject({
      issuer: 'github',
      decision: 'allow',
      account: REPORTING,
    });
  });

  it('Kubernetes: the file source at the projected token → a keyless token', async () => {
    const auth = new GoogleAuth({
      keyFilename: kubernetesFile('k8s-node', KEYLESS),
      scopes: [CLOUD_PLATFORM],
    });
    const token = (await auth.getAccessToken()) as string;
    expect(await tokeninfo(token)).toMatchObject({ email: KEYLESS });
    expect(auditLines(x.broker, NIGHTLY).at(-1)).toMatchObject({ issuer: 'onprem', account: KEYLESS });
  });

  it('the credential file the test wrote is the external_account shape, and no stranger issuer was asked', () => {
    expect(JSON.parse(readFileSync(githubFile('gh-shape', REPORTING), 'utf8'))).toMatchObject({
      credential_source: { format: { type: 'json', subject_token_field_name: 'value' } },
    });
    expect(requestCounts(x.strangers)).toEqual([0, 0]);
  });
});

describe.runIf(pythonAvailable())("Python google-auth from external callers' credential files", () => {
  const script = (file: string, scope: string) => `
import json, google.auth
from google.auth.transport.requests import Request
creds, _ = google.auth.load_credentials_from_file(${JSON.stringify(file)}, scopes=[${JSON.stringify(scope)}])
creds.refresh(Request())
print(json.dumps({"type": type(creds).__module__ + "." + type(creds).__name__, "token": creds.token}))
`;

  it('GitHub Actions: identity_pool.Credentials, url source with headers and format json', async () => {
    const issued = x.github.stats.tokensIssued;
    const out = JSON.parse(await runPython(script(githubFile('gh-py', KEYLESS), BIGQUERY))) as {
      type: string;
      token: string;
    };
    expect(out.type).toBe('google.auth.identity_pool.Credentials');
    expect(await tokeninfo(out.token)).toMatchObject({ email: KEYLESS });
    expect(x.github.stats.tokensIssued - issued).toBe(1);
  });

  it('Kubernetes: identity_pool.Credentials, file source, after the kubelet refreshed the token', async () => {
    await projected.refresh();
    const out = JSON.parse(await runPython(script(kubernetesFile('k8s-py', KEYLESS), BIGQUERY))) as {
      token: string;
    };
    expect(await tokeninfo(out.token)).toMatchObject({ email: KEYLESS });
    expect(requestCounts(x.strangers)).toEqual([0, 0]);
  });
});
