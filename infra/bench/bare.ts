/** The framework's ceiling for the bench: a bare functions-framework handler that returns constant JSON. */
import * as functions from '@google-cloud/functions-framework';

functions.http('bare', (_req, res) => {
  res.setHeader('Cache-Control', 'no-store');
  res.json({ access_token: 'constant', token_type: 'Bearer', expires_in: 3600 });
});
