/**
 * The `external_account` credential file that lets Google's own auth
 * libraries (Node, Python, Go, Java, gcloud) get tokens from the broker's
 * `sts` endpoint by RFC 8693 token exchange, with no broker code
 * (docs/calling.md, docs/contract.md, "Token exchange (RFC 8693)").
 */
import { type AccountRef, stsAudience } from '../../../wire/rules.js';
import type { SubjectTokenType } from '../../../wire/wire.js';

/** The subject token type of a Google ID token (the default). */
export const ID_TOKEN_TYPE: SubjectTokenType = 'urn:ietf:params:oauth:token-type:id_token';
/** The subject token type of another issuer's OIDC token (GitHub Actions, Kubernetes). */
export const JWT_TYPE: SubjectTokenType = 'urn:ietf:params:oauth:token-type:jwt';

/**
 * How the libraries read the subject token out of what the source gives:
 * the whole text, or one field of a JSON object (GitHub's `{"value": ...}`).
 */
export type SourceFormat = { type: 'text' } | { type: 'json'; subject_token_field_name: string };

/** Where the libraries read the caller's token from: the three sources they support. */
export type SubjectTokenSource =
  | { file: string; format?: SourceFormat }
  | { url: string; headers?: Record<string, string>; format?: SourceFormat }
  | { executable: { command: string; timeoutMillis?: number; outputFile?: string } };

/** The file's JSON, in the field names Google's libraries read. */
export interface ExternalAccountCredentialFile {
  type: 'external_account';
  audience: string;
  subject_token_type: SubjectTokenType;
  token_url: string;
  credential_source:
    | { file: string; format: SourceFormat }
    | { url: string; headers?: Record<string, string>; format: SourceFormat }
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
  subjectTokenType?: SubjectTokenType;
}): ExternalAccountCredentialFile {
  const { source } = input;
  let credentialSource: ExternalAccountCredentialFile['credential_source'];
  if ('file' in source) credentialSource = { file: source.file, format: source.format ?? { type: 'text' } };
  else if ('url' in source)
    credentialSource = {
      url: source.url,
      ...(source.headers && Object.keys(source.headers).length > 0 ? { headers: source.headers } : {}),
      format: source.format ?? { type: 'text' },
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
    subject_token_type: input.subjectTokenType ?? ID_TOKEN_TYPE,
    token_url: input.stsUrl,
    credential_source: credentialSource,
  };
}
