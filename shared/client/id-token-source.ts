/**
 * The caller's Google ID token for `audience`, from the environment: on
 * Google Cloud the metadata server (through google-auth-library's ID-token
 * client, imported lazily); elsewhere whatever Application Default
 * Credentials provide (a service-account key, or impersonation).
 */
export function googleIdTokenSource(audience: string): () => Promise<string> {
  let client: Promise<{ idTokenProvider: { fetchIdToken(audience: string): Promise<string> } }> | undefined;
  return async () => {
    client ??= import('google-auth-library').then(({ GoogleAuth }) =>
      new GoogleAuth().getIdTokenClient(audience),
    );
    // The ID-token client caches and refreshes the token itself.
    return (await client).idTokenProvider.fetchIdToken(audience);
  };
}
