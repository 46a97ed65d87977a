import { AuthClient, type gaxios } from 'google-auth-library';
import type { AccessTokenRequest, BrokerClient } from './broker-client.js';

type GaxiosOptions = Parameters<AuthClient['request']>[0];

/**
 * A google-auth-library `AuthClient` that gets its access tokens from the
 * broker, so `googleapis` and `@google-cloud/*` clients work unchanged:
 * `new Storage({ authClient: new BrokerAuthClient(broker, { serviceAccount, scopes }) })`.
 * Works with consumers built on google-auth-library 9 (e.g. Storage 7) as
 * well as 10 and 11 (Storage 8, BigQuery 8).
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

  /**
   * `Authorization: Bearer <token>`, as a `Headers` that is also a plain
   * record: google-auth-library 10+ reads it as `Headers`, while 9 does
   * `Object.assign(opts.headers, headers)`, which copies only own enumerable
   * properties and would otherwise send the request with no credential.
   */
  override async getRequestHeaders(): Promise<Headers> {
    const value = `Bearer ${(await this.getAccessToken()).token}`;
    const headers = new Headers({ authorization: value });
    Object.defineProperty(headers, 'Authorization', { value, enumerable: true });
    return headers;
  }

  /** Sends a request with the brokered token; its response's headers read both as `Headers` and as a plain record (google-auth-library 9 reads `res.headers.location`). */
  override async request<T>(options: GaxiosOptions): Promise<gaxios.GaxiosResponse<T>> {
    const headers = new Headers(options.headers as ConstructorParameters<typeof Headers>[0]);
    headers.set('authorization', `Bearer ${(await this.getAccessToken()).token}`);
    const res = await this.transporter.request<T>({ ...options, headers });
    // gaxios may build its Headers from another fetch implementation than the global one.
    if (typeof (res.headers as Partial<Headers> | undefined)?.forEach === 'function')
      asRecordToo(res.headers);
    return res;
  }
}

/** Adds each header as an own enumerable property (lower-case name, as gaxios 6 gave them), except names that would hide a `Headers` method. */
function asRecordToo(headers: Headers): void {
  headers.forEach((value, name) => {
    if (!(name in headers)) Object.defineProperty(headers, name, { value, enumerable: true });
  });
}
