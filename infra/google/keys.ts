import { generateKeyPairSync, randomBytes, randomInt } from 'node:crypto';

/** A Google service-account key file, as `gcloud iam service-accounts keys create` writes it. */
export interface ServiceAccountKeyJson {
  type: 'service_account';
  project_id: string;
  private_key_id: string;
  private_key: string;
  client_email: string;
  client_id: string;
  auth_uri: string;
  token_uri: string;
  auth_provider_x509_cert_url: string;
  client_x509_cert_url: string;
  universe_domain: string;
}

/** Generates a demo service-account key (RSA 2048) in Google's key-file shape, and its public key. */
export function generateServiceAccountKey(options: {
  email: string;
  projectId: string;
  clientId?: string;
  tokenUri?: string;
}): { json: ServiceAccountKeyJson; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const clientId = options.clientId ?? `1${Array.from({ length: 20 }, () => randomInt(10)).join('')}`;
  return {
    json: {
      type: 'service_account',
      project_id: options.projectId,
      private_key_id: randomBytes(20).toString('hex'),
      private_key: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
      client_email: options.email,
      client_id: clientId,
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: options.tokenUri ?? 'https://oauth2.googleapis.com/token',
      auth_provider_x509_cert_url: 'https://www.googleapis.com/oauth2/v1/certs',
      client_x509_cert_url: `https://www.googleapis.com/robot/v1/metadata/x509/${encodeURIComponent(options.email)}`,
      universe_domain: 'googleapis.com',
    },
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}
