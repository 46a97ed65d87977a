/**
 * `credential-config`'s flags, in gcloud's spelling (`gcloud iam
 * workload-identity-pools create-cred-config`), plus shortcuts for the
 * common sources: the metadata server, a GitHub Actions job and a
 * Kubernetes projected token. Throws UsageError (exit 2) for any problem.
 */
import type { AccountRef } from '../../../wire/rules.js';
import { SUBJECT_TOKEN_TYPES, type SubjectTokenType } from '../../../wire/wire.js';
import { checkBrokerUrl } from '../broker-client.js';
import type { Plan, Values } from './arguments.js';
import {
  credentialConfig,
  JWT_TYPE,
  METADATA_HEADERS,
  metadataIdentityUrl,
  type SourceFormat,
  type SubjectTokenSource,
} from './credential-config.js';
import { UsageError } from './usage.js';

/** The variables a GitHub Actions job with `permissions: id-token: write` has. */
const GITHUB_URL = 'ACTIONS_ID_TOKEN_REQUEST_URL';
const GITHUB_TOKEN = 'ACTIONS_ID_TOKEN_REQUEST_TOKEN';

/** The credential file a good `credential-config` command line asks for. */
export function credentialPlan(
  values: Values,
  env: NodeJS.ProcessEnv,
  target: AccountRef,
  url: string | undefined,
): Plan {
  const stsUrl = values['sts-url'] ?? (url ? `${url.replace(/\/+$/, '')}/sts` : undefined);
  if (!stsUrl)
    throw new UsageError(
      'give the broker URL (--url URL or $BROKER_URL) or the sts function URL (--sts-url)',
    );
  if (values['sts-url'] !== undefined && values.url !== undefined)
    throw new UsageError('give --url or --sts-url, not both');
  checkBrokerUrl(stsUrl, values['sts-url'] !== undefined ? '--sts-url' : '--url');

  const sources = [
    values['credential-source-file'] !== undefined,
    values['credential-source-metadata'] === true,
    values['credential-source-url'] !== undefined,
    values['executable-command'] !== undefined,
    values['github-actions'] === true,
    values['kubernetes-token'] !== undefined,
  ].filter(Boolean).length;
  if (sources !== 1)
    throw new UsageError(
      'give exactly one source of the caller token: --credential-source-file, --credential-source-url, --credential-source-metadata, --github-actions, --kubernetes-token or --executable-command',
    );
  if (values['credential-source-headers'] !== undefined && values['credential-source-url'] === undefined)
    throw new UsageError('--credential-source-headers goes with --credential-source-url');
  if (
    (values['executable-timeout-millis'] !== undefined || values['executable-output-file'] !== undefined) &&
    values['executable-command'] === undefined
  )
    throw new UsageError(
      '--executable-timeout-millis and --executable-output-file go with --executable-command',
    );
  const explicitFormat = formatFrom(values);
  if (
    explicitFormat !== undefined &&
    values['credential-source-file'] === undefined &&
    values['credential-source-url'] === undefined
  )
    throw new UsageError(
      '--credential-source-type and --credential-source-field-name go with --credential-source-file or --credential-source-url',
    );
  let subjectTokenType = subjectTokenTypeFrom(values['subject-token-type']);
  const brokerAudience = values['broker-audience'] ?? env['BROKER_AUDIENCE'] ?? url;
  const withFormat = explicitFormat === undefined ? {} : { format: explicitFormat };

  let source: SubjectTokenSource;
  if (values['credential-source-file'] !== undefined) {
    if (values['credential-source-file'] === '')
      throw new UsageError('--credential-source-file must not be empty');
    source = { file: values['credential-source-file'], ...withFormat };
  } else if (values['kubernetes-token'] !== undefined) {
    // A projected service-account token: the kubelet keeps a fresh JWT in the file.
    if (values['kubernetes-token'] === '')
      throw new UsageError('--kubernetes-token takes the token file path');
    source = { file: values['kubernetes-token'], format: { type: 'text' } };
    subjectTokenType = jwtOnly('--kubernetes-token', values['subject-token-type'], subjectTokenType);
  } else if (values['github-actions']) {
    source = githubActionsSource(values, env, brokerAudience);
    subjectTokenType = jwtOnly('--github-actions', values['subject-token-type'], subjectTokenType);
  } else if (values['credential-source-metadata']) {
    if (!brokerAudience)
      throw new UsageError(
        '--credential-source-metadata needs the broker audience: --broker-audience, $BROKER_AUDIENCE or --url',
      );
    const host = env['GCE_METADATA_HOST'];
    source = {
      url: metadataIdentityUrl(brokerAudience, host || undefined),
      headers: { ...METADATA_HEADERS },
    };
  } else if (values['credential-source-url'] !== undefined) {
    if (!URL.canParse(values['credential-source-url']))
      throw new UsageError('--credential-source-url is not a URL');
    source = {
      url: values['credential-source-url'],
      ...(values['credential-source-headers'] === undefined
        ? {}
        : { headers: headerPairs(values['credential-source-headers']) }),
      ...withFormat,
    };
  } else {
    source = executableSource(values);
  }
  if (values.subject === '') throw new UsageError('--subject must not be empty');
  return {
    kind: 'credential-config',
    file: credentialConfig({
      stsUrl,
      target,
      subject: values.subject,
      source,
      ...(subjectTokenType === undefined ? {} : { subjectTokenType }),
    }),
    outputFile: values['output-file'],
  };
}

/**
 * A GitHub Actions job's ID token URL, as google-github-actions/auth writes it: the job's
 * `$ACTIONS_ID_TOKEN_REQUEST_URL` plus `&audience=`, with its request token as a bearer; the
 * answer is `{"value": JWT}`. Both variables exist only inside the job, and the token is a
 * secret, so the file must go to --output-file (0600), never to the job's log.
 */
function githubActionsSource(
  values: Values,
  env: NodeJS.ProcessEnv,
  brokerAudience: string | undefined,
): SubjectTokenSource {
  const requestUrl = env[GITHUB_URL];
  const requestToken = env[GITHUB_TOKEN];
  if (!requestUrl || !requestToken)
    throw new UsageError(
      `--github-actions reads $${GITHUB_URL} and $${GITHUB_TOKEN}: run it inside the job, which needs \`permissions: id-token: write\``,
    );
  if (!URL.canParse(requestUrl)) throw new UsageError(`$${GITHUB_URL} is not a URL`);
  if (values['output-file'] === undefined)
    throw new UsageError(
      `--github-actions writes the job's request token into the file: give --output-file, not standard output`,
    );
  if (!brokerAudience)
    throw new UsageError(
      '--github-actions needs the broker audience: --broker-audience, $BROKER_AUDIENCE or --url',
    );
  const u = new URL(requestUrl);
  u.searchParams.set('audience', brokerAudience);
  return {
    url: u.toString(),
    headers: { Authorization: `bearer ${requestToken}` },
    format: { type: 'json', subject_token_field_name: 'value' },
  };
}

function executableSource(values: Values): SubjectTokenSource {
  const command = values['executable-command'] ?? '';
  if (command.trim() === '') throw new UsageError('--executable-command must not be empty');
  const timeoutText = values['executable-timeout-millis'];
  const timeout = timeoutText === undefined ? undefined : Number(timeoutText);
  if (timeout !== undefined && !(Number.isInteger(timeout) && timeout >= 5000 && timeout <= 120_000))
    throw new UsageError('--executable-timeout-millis must be an integer from 5000 to 120000');
  return {
    executable: {
      command,
      ...(timeout === undefined ? {} : { timeoutMillis: timeout }),
      ...(values['executable-output-file'] === undefined
        ? {}
        : { outputFile: values['executable-output-file'] }),
    },
  };
}

/** `--credential-source-type text|json` with `--credential-source-field-name` (json only, required there). */
function formatFrom(values: Values): SourceFormat | undefined {
  const type = values['credential-source-type'];
  const field = values['credential-source-field-name'];
  if (type === undefined && field === undefined) return undefined;
  if (type === 'json') {
    if (!field) throw new UsageError('--credential-source-type json needs --credential-source-field-name');
    return { type: 'json', subject_token_field_name: field };
  }
  if (type === undefined || type === 'text') {
    if (field !== undefined)
      throw new UsageError('--credential-source-field-name goes with --credential-source-type json');
    return { type: 'text' };
  }
  throw new UsageError('--credential-source-type takes text or json');
}

/** `--subject-token-type`: the full URN, or its last word (`jwt`, `id_token`). */
function subjectTokenTypeFrom(text: string | undefined): SubjectTokenType | undefined {
  if (text === undefined) return undefined;
  const full = text.includes(':') ? text : `urn:ietf:params:oauth:token-type:${text}`;
  if (!(SUBJECT_TOKEN_TYPES as readonly string[]).includes(full))
    throw new UsageError(`--subject-token-type takes ${SUBJECT_TOKEN_TYPES.join(' or ')}`);
  return full as SubjectTokenType;
}

/** Another issuer's token is a JWT, not a Google ID token. */
function jwtOnly(
  flag: string,
  given: string | undefined,
  type: SubjectTokenType | undefined,
): SubjectTokenType {
  if (given !== undefined && type !== JWT_TYPE)
    throw new UsageError(`${flag} sends a ${JWT_TYPE}; leave out --subject-token-type`);
  return JWT_TYPE;
}

function headerPairs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const pair of text.split(',')) {
    const i = pair.indexOf('=');
    const name = pair.slice(0, i).trim();
    if (i <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name))
      throw new UsageError('--credential-source-headers takes NAME=VALUE pairs separated by commas');
    out[name] = pair.slice(i + 1);
  }
  return out;
}
