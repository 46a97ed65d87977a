/** POSTs JSON with a caller's bearer token; returns status, headers and the parsed body. */
export async function post(
  url: string,
  body: unknown,
  options: { token?: string; headers?: Record<string, string>; method?: string; raw?: string } = {},
): Promise<{ status: number; headers: Headers; json: Record<string, unknown>; text: string }> {
  const headers: Record<string, string> = { 'Content-Type': 'application/json', ...options.headers };
  if (options.token !== undefined) headers['Authorization'] = `Bearer ${options.token}`;
  const method = options.method ?? 'POST';
  const res = await fetch(url, {
    method,
    headers,
    ...(method === 'GET' || method === 'HEAD' ? {} : { body: options.raw ?? JSON.stringify(body) }),
  });
  const text = await res.text();
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(text) as Record<string, unknown>;
  } catch {}
  return { status: res.status, headers: res.headers, json, text };
}
