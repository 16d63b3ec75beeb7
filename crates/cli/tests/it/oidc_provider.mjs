// A real OpenID Connect provider for the broker's OIDC tests: the npm package
// `oidc-provider` (a certified implementation) on 127.0.0.1, plain HTTP (loopback only).
//
// Environment: OIDC_PROVIDER_DIR (the npm prefix it was installed under), PORT,
// REDIRECT_URI, CLIENT_SECRET, USERS (JSON: {"alice": {"groups": ["vpn-users"]}}).
// Clients: `portcullis` (the broker) and `other` (another application). Users sign in on
// the development login page (any password); consent is granted without a page. The ID
// token carries preferred_username, email and the `groups` claim. Prints "ready <issuer>"
// once listening.

import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

const moduleFile = join(process.env.OIDC_PROVIDER_DIR, 'node_modules', 'oidc-provider', 'lib', 'index.js');
const { default: Provider } = await import(pathToFileURL(moduleFile).href);

const port = Number(process.env.PORT);
const issuer = `http://127.0.0.1:${port}`;
const users = JSON.parse(process.env.USERS || '{}');
const scopes = 'openid profile email groups';

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'portcullis',
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
    {
      client_id: 'other',
      client_secret: 'other-secret-other-secret-other-secret',
      redirect_uris: [process.env.REDIRECT_URI],
      response_types: ['code'],
      grant_types: ['authorization_code'],
    },
  ],
  scopes: scopes.split(' '),
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  // Claims in the ID token itself, not only from the userinfo endpoint.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  cookies: { keys: ['portcullis-test-cookie-key'] },
  async findAccount(ctx, id) {
    const user = users[id];
    if (!user) return undefined;
    return {
      accountId: id,
      async claims() {
        return {
          sub: id,
          preferred_username: id,
          name: id,
          email: `${id}@example.com`,
          email_verified: true,
          groups: user.groups,
        };
      },
    };
  },
  // Consent granted without a page: the test signs in, nothing more.
  async loadExistingGrant(ctx) {
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope(scopes);
    await grant.save();
    return grant;
  },
});

provider.listen(port, '127.0.0.1', () => {
  console.log(`ready ${issuer}`);
});
