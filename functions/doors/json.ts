import { BrokerError } from '../../shared/errors.js';
import { isMediaType } from './media-type.js';

/**
 * The JSON door's body: checks the media type (415 for anything but UTF-8
 * JSON), then parses the bytes the edge read (400 when they are not a JSON
 * object or array). An empty body is `{}`. V8's `JSON.parse` is linear in its
 * input and does not recurse on the stack, and the edge caps the input at
 * 64 KiB, so this costs at most a few milliseconds whatever a caller sends.
 */
export function parseJsonBody(contentType: string | undefined, raw: Buffer | undefined): unknown {
  if (!isMediaType(contentType, 'application/json')) {
    throw new BrokerError(
      'unsupported_media_type',
      'Send the body as JSON, with Content-Type: application/json.',
    );
  }
  const text = utf8(raw);
  if (text.length === 0) return {};
  const first = /^[ \t\n\r]*(.)/s.exec(text)?.[1];
  if (first === '{' || first === '[') {
    try {
      return JSON.parse(text);
    } catch {
      // answered below
    }
  }
  throw new BrokerError('invalid_request', 'The body is not valid JSON.');
}

/** The bytes as UTF-8 text, without a byte order mark. */
export function utf8(raw: Buffer | undefined): string {
  if (raw === undefined) return '';
  const text = raw.toString('utf8');
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
