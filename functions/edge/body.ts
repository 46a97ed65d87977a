import type { IncomingMessage } from 'node:http';
import { BrokerError } from '../../shared/errors.js';

/** Largest request body the broker reads, on the wire and after decompression (docs/contract.md: 413 over 64 KiB). */
export const MAX_BODY_BYTES = 64 * 1024;

/** A request as the functions framework hands it on, with the decoded bytes of its body. */
export type BodyRequest = IncomingMessage & { body?: unknown; rawBody?: Buffer };

/**
 * Called once when the body has been read: `error` is undefined when it was
 * read whole and parsed. `wireBytes` counts the body bytes received.
 */
export type BodyDone = (error: BrokerError | undefined, wireBytes: number) => void;

// A CommonJS builtin, like node:http in shared/adapters/http.ts (the framework's parser has loaded it already).
const zlib = process.getBuiltinModule('node:zlib');
const EMPTY = Buffer.alloc(0);
const options = { maxOutputLength: MAX_BODY_BYTES };
type Decoder = (input: Buffer) => Buffer;
/**
 * The encodings the broker inflates, each synchronously and to at most
 * MAX_BODY_BYTES: one decoder is alive at a time whatever the concurrency.
 * A decoder's window is its fixed cost: 32 KiB for gzip and deflate, up to
 * 16 MiB for br (the stream's header picks it). zstd is refused: its window
 * can be 128 MiB, and the framework's parser (body-parser 2) takes it on
 * Node 22.
 */
const DECODERS: Readonly<Record<string, Decoder>> = {
  gzip: (b) => zlib.gunzipSync(b, options),
  deflate: (b) => zlib.inflateSync(b, options),
  br: (b) => zlib.brotliDecompressSync(b, options),
};

/**
 * Reads a request's body with a hard cap, instead of the functions
 * framework's parser (whose limit is 1024 MB and which inflates before any
 * check). Stops reading as soon as more than MAX_BODY_BYTES arrived, whatever
 * the headers say (chunked or not); inflates gzip, deflate and br
 * bodies to at most MAX_BODY_BYTES. Then sets `req.rawBody` (the decoded
 * bytes) and parses nothing: each door parses its own media type, after its
 * route and method are known, so no work is spent on a body nothing reads.
 * A fully read request is what the framework's parsers skip, so nothing
 * reads it twice.
 *
 * Calls `done` with `request_too_large` (413), `unsupported_media_type` (415:
 * an unknown Content-Encoding) or `invalid_request` (400: undecodable bytes);
 * or not at all when the client goes away first.
 */
export function readBody(req: BodyRequest, done: BodyDone): void {
  const encoding = req.headers['content-encoding'];
  const decode = encoding === undefined ? undefined : decoderFor(encoding);
  if (decode === null) {
    done(new BrokerError('unsupported_media_type', 'The body must be sent as is, gzip, deflate or br.'), 0);
    return;
  }
  let size = 0;
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  const onData = (chunk: Buffer) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      stop();
      first = undefined;
      chunks = undefined;
      done(tooLarge(), size);
    } else if (first === undefined) first = chunk;
    else if (chunks === undefined) chunks = [first, chunk];
    else chunks.push(chunk);
  };
  const onEnd = () => {
    stop();
    const wire = chunks === undefined ? (first ?? EMPTY) : Buffer.concat(chunks, size);
    let raw: Buffer;
    try {
      raw = decode === undefined || wire.length === 0 ? wire : decode(wire);
    } catch (err) {
      done(
        (err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE'
          ? tooLarge()
          : new BrokerError('invalid_request', 'The request body could not be decompressed.'),
        size,
      );
      return;
    }
    req.rawBody = raw;
    done(undefined, size);
  };
  const onGone = () => stop();
  function stop(): void {
    req.off('data', onData);
    req.off('end', onEnd);
    req.off('error', onGone);
    req.off('aborted', onGone);
    req.pause();
  }
  req.on('data', onData);
  req.on('end', onEnd);
  req.on('error', onGone);
  req.on('aborted', onGone);
}

/** The decoder for a Content-Encoding; undefined for none, null for one the broker does not take. */
function decoderFor(header: string): Decoder | undefined | null {
  const name = header.trim().toLowerCase();
  if (name === 'identity' || name === '') return undefined;
  return Object.hasOwn(DECODERS, name) ? (DECODERS[name] as Decoder) : null;
}

/** The 413 of a body over MAX_BODY_BYTES. */
export function tooLarge(): BrokerError {
  return new BrokerError('request_too_large', `The request body is larger than ${MAX_BODY_BYTES} bytes.`);
}
