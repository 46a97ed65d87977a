/** The client without google-auth-library: what `gcp-token-broker-client` exports at its root. */

export type { AccountRef } from '../../wire/rules.js';
export type { WireErrorCode } from '../../wire/wire.js';
export {
  type AccessTokenRequest,
  BrokerClient,
  type BrokerClientOptions,
  type BrokerToken,
  type IdTokenRequest,
  type JwtRequest,
} from './broker-client.js';
export { BrokerClientError, type BrokerClientErrorCode, CLIENT_ERROR_CODES } from './errors.js';
export { googleIdTokenSource } from './id-token-source.js';
