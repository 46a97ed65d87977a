/**
 * The broker's client library for callers: `import { BrokerClient } from 'gcp-token-broker/client'`
 * (or from the `gcp-token-broker-client` package, where `BrokerAuthClient` lives in
 * `gcp-token-broker-client/google-auth` so that google-auth-library stays an optional peer).
 */
export { BrokerAuthClient } from './auth-client.js';
export * from './core.js';
