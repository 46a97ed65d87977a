import { AuthClient } from 'google-auth-library';
import type { AccessTokenRequest, BrokerClient } from './broker-client.js';

type GaxiosOptions = Parameters<AuthClient['request']>[0];

/**
 * A google-auth-library `AuthClient` that gets its access tokens from the
 * broker, so `googleapis` and `@google-cloud/*` clients work unchanged:
 * `new Storage({ authClient: new BrokerAuthClient(broker, { serviceAccount, scopes }) })`.
 */
export class BrokerAuthClient extends AuthClient {
  readonly #broker: BrokerClient;
  readonly #request: AccessTokenRequest;

  constructor(broker: BrokerClient, request: AccessTokenRequest) {
    super();
    this.#broker = broker;
    this.#request = request;
  }

  override async getAccessToken(): Promise<{ token: string; res: null }> {
    const t = await this.#broker.accessToken(this.#request);
    this.credentials = { access_token: t.token, expiry_date: t.expiresAt, token_type: 'Bearer' };
    return { token: t.token, res: null };
  }

  override async getRequestHeaders(): Promise<Headers> {
    const { token } = await this.getAccessToken();
    return new Headers({ authorization: `Bearer ${token}` });
  }

  override async request<T>(options: GaxiosOptions) {
    const headers = new Headers(options.headers as ConstructorParameters<typeof Headers>[0]);
    headers.set('authorization', `Bearer ${(await this.getAccessToken()).token}`);
    return this.transporter.request<T>({ ...options, headers });
  }
}
