/**
 * The caller's Google ID token for `audience`, from the environment: on
 * Google Cloud the metadata server (through google-auth-library's ID-token
 * client, imported lazily: it is an optional peer of the client package);
 * elsewhere whatever Application Default Credentials provide (a
 * service-account key, or impersonation). Rejects with a plain message when
 * google-auth-library is not installed.
 */
export function googleIdTokenSource(audience: string): () => Promise<string> {
  let client: Promise<{ idTokenProvider: { fetchIdToken(audience: string): Promise<string> } }> | undefined;
  return async () => {
    client ??= import('google-auth-library').then(
      ({ GoogleAuth }) => new GoogleAuth().getIdTokenClient(audience),
      (err: unknown) => {
        client = undefined;
        throw new Error(
          'googleIdTokenSource needs google-auth-library (npm install google-auth-library); or pass your own `idToken` function (the CLI reads $BROKER_ID_TOKEN)',
          { cause: err },
        );
      },
    );
    // The ID-token client caches and refreshes the token itself.
    return (await client).idTokenProvider.fetchIdToken(audience);
  };
}
