export * from '../../../infra/local-stack.js';
export * from './http.js';
