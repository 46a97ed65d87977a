// The smoke test's one task (terraform/smoke.tf, README step 6), run by `node --input-type=module -e` in the
// Cloud Run job: from inside the VPC, ask the broker for an access token as the job's own account, then print
// one JSON line with what Google's tokeninfo endpoint says about that token (its account, scopes and expiry).
// It never prints a token. Node 22, no dependencies. Settings, from the job's environment: BROKER_URL (the
// token endpoint), BROKER_AUDIENCE (its function's URL), SMOKE_REQUEST (the JSON body); GCE_METADATA_HOST and
// TOKENINFO_URL only to point it at stand-ins in tests.
const env = process.env;
const metadata = `http://${env.GCE_METADATA_HOST || 'metadata.google.internal'}`;
const tokeninfo = env.TOKENINFO_URL || 'https://oauth2.googleapis.com/tokeninfo';

/** One log line: Cloud Run's agent turns it into an entry whose jsonPayload.smoke is "ok" or "failed". */
function report(severity, fields) {
  const line = { severity, message: `token broker smoke test: ${fields.smoke}`, ...fields };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

async function run() {
  const audience = encodeURIComponent(env.BROKER_AUDIENCE ?? '');
  const id = await fetch(
    `${metadata}/computeMetadata/v1/instance/service-accounts/default/identity?audience=${audience}&format=full`,
    { headers: { 'Metadata-Flavor': 'Google' }, signal: AbortSignal.timeout(10_000) },
  );
  if (!id.ok) throw new Error(`the metadata server answered ${id.status} for an ID token`);
  const idToken = (await id.text()).trim();
  // The ID token twice: X-Serverless-Authorization for Cloud Run's invoker check, Authorization for the
  // broker's own (docs/contract.md, Caller authentication).
  const answer = await fetch(env.BROKER_URL ?? '', {
    method: 'POST',
    headers: {
      authorization: `Bearer ${idToken}`,
      'x-serverless-authorization': `Bearer ${idToken}`,
      'content-type': 'application/json',
    },
    body: env.SMOKE_REQUEST,
    signal: AbortSignal.timeout(30_000),
  });
  const body = await answer.json().catch(() => ({}));
  if (!answer.ok || typeof body.access_token !== 'string') {
    report('ERROR', {
      smoke: 'failed',
      broker_status: answer.status,
      error: body.error,
      error_description: body.error_description,
    });
    return 1;
  }
  const info = await fetch(`${tokeninfo}?access_token=${encodeURIComponent(body.access_token)}`, {
    signal: AbortSignal.timeout(10_000),
  });
  const infoBody = await info.json().catch(() => ({}));
  report(info.ok ? 'INFO' : 'ERROR', {
    smoke: info.ok ? 'ok' : 'failed',
    broker_status: answer.status,
    cache_status: answer.headers.get('cache-status'),
    expires_in: body.expires_in,
    tokeninfo_status: info.status,
    tokeninfo: infoBody,
  });
  return info.ok ? 0 : 1;
}

run().then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    report('ERROR', { smoke: 'failed', error: String(err?.message ?? err) });
    process.exitCode = 1;
  },
);
