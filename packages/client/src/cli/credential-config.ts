/**
 * The `external_account` credential file that lets Google's own auth
 * libraries (Node, Python, Go, Java, gcloud) get tokens from the broker's
 * `sts` endpoint by RFC 8693 token exchange, with no broker code
 * (docs/calling.md, docs/contract.md, "Token exchange (RFC 8693)").
 */
import { type AccountRef, stsAudience } from '../../../wire/rules.js';

/** The subject token the libraries read and send: the caller's Google ID token. */
export const SUBJECT_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:id_token';

/** Where the libraries read the caller's ID token from: the three sources they support. */
export type SubjectTokenSource =
  | { file: string }
  | { url: string; headers?: Record<string, string> }
  | { executable: { command: string; timeoutMillis?: number; outputFile?: string } };

/** The file's JSON, in the field names Google's libraries read. */
export interface ExternalAccountCredentialFile {
  type: 'external_account';
  audience: string;
  subject_token_type: typeof SUBJECT_TOKEN_TYPE;
  token_url: string;
  credential_source:
    | { file: string; format: { type: 'text' } }
    | { url: string; headers?: Record<string, string>; format: { type: 'text' } }
    | { executable: { command: string; timeout_millis?: number; output_file?: string } };
}

/** The metadata server's identity endpoint for `brokerAudience`, as a Cloud Run or GKE workload reads its ID token. */
export function metadataIdentityUrl(brokerAudience: string, host = 'metadata.google.internal'): string {
  const query = new URLSearchParams({ audience: brokerAudience, format: 'full' });
  return `http://${host}/computeMetadata/v1/instance/service-accounts/default/identity?${query}`;
}

/** The header the metadata server requires. */
export const METADATA_HEADERS: Readonly<Record<string, string>> = { 'Metadata-Flavor': 'Google' };

/**
 * Builds the credential file's JSON. It names no scopes: GoogleAuth (Node) and
 * google-auth (Python) take them from the calling code or the client
 * library's defaults, and ignore a `scopes` field in the file.
 */
export function credentialConfig(input: {
  stsUrl: string;
  target: AccountRef;
  subject?: string | undefined;
  source: SubjectTokenSource;
}): ExternalAccountCredentialFile {
  const { source } = input;
  let credentialSource: ExternalAccountCredentialFile['credential_source'];
  if ('file' in source) credentialSource = { file: source.file, format: { type: 'text' } };
  else if ('url' in source)
    credentialSource = {
      url: source.url,
      ...(source.headers && Object.keys(source.headers).length > 0 ? { headers: source.headers } : {}),
      format: { type: 'text' },
    };
  else {
    const e = source.executable;
    credentialSource = {
      executable: {
        command: e.command,
        ...(e.timeoutMillis === undefined ? {} : { timeout_millis: e.timeoutMillis }),
        ...(e.outputFile === undefined ? {} : { output_file: e.outputFile }),
      },
    };
  }
  return {
    type: 'external_account',
    audience: stsAudience(input.target, input.subject),
    subject_token_type: SUBJECT_TOKEN_TYPE,
    token_url: input.stsUrl,
    credential_source: credentialSource,
  };
}
