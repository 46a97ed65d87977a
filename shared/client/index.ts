/** The broker's client library for callers: `import { BrokerClient } from 'gcp-token-broker/client'`. */
export { BrokerAuthClient } from './auth-client.js';
export {
  type AccessTokenRequest,
  BrokerClient,
  type BrokerClientOptions,
  type BrokerToken,
  type IdTokenRequest,
  type JwtRequest,
} from './broker-client.js';
export { BrokerClientError } from './errors.js';
export { googleIdTokenSource } from './id-token-source.js';
