/**
 * The JSON side of Upstash's REST protocol: parsing command arrays out of a
 * request body and turning Redis replies into JSON results.
 */

/** A JSON value as the stand-in answers it. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json };

/** One command's answer in `/pipeline` and `/multi-exec` (and the body of `POST /`). */
export type Answer = { result: Json } | { error: string };

/** A request the stand-in refuses, with the HTTP status and the `{ error }` it answers. */
export class RestError extends Error {
  readonly status: number;
  constructor(status: number, message: string) {
    super(message);
    this.name = 'RestError';
    this.status = status;
  }
}

/** Validates one command array (`["SET","k","v","PX",1000]`) and turns its arguments into strings; throws RestError 400. */
export function parseCommand(value: unknown): string[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new RestError(400, 'ERR a command must be a non-empty JSON array');
  }
  return value.map((arg: unknown) => {
    if (typeof arg === 'string') return arg;
    if (typeof arg === 'number' || typeof arg === 'boolean') return String(arg);
    throw new RestError(400, 'ERR command arguments must be strings, numbers or booleans');
  });
}

/** Validates a `/pipeline` or `/multi-exec` body: a non-empty array of command arrays; throws RestError 400. */
export function parseCommands(value: unknown): string[][] {
  if (!Array.isArray(value) || value.length === 0) {
    throw new RestError(400, 'ERR a pipeline must be a non-empty JSON array of commands');
  }
  return value.map((command: unknown) => parseCommand(command));
}

/**
 * Turns a Redis reply into its JSON result. With `base64`, every string
 * (bulk or status, at any depth) is base64 of its bytes, as Upstash does for
 * `Upstash-Encoding: base64`; numbers and nulls stay as they are.
 */
export function encodeReply(reply: unknown, base64: boolean): Json {
  if (reply === null || reply === undefined) return null;
  if (typeof reply === 'number') return reply;
  if (typeof reply === 'bigint') return Number(reply);
  if (Buffer.isBuffer(reply)) return base64 ? reply.toString('base64') : reply.toString('utf8');
  if (Array.isArray(reply)) return reply.map((item: unknown) => encodeReply(item, base64));
  // An error nested in an array reply (e.g. a Lua table holding redis.pcall's error).
  const text = reply instanceof Error ? reply.message : String(reply);
  return base64 ? Buffer.from(text, 'utf8').toString('base64') : text;
}
