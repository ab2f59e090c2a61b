// A real OpenID Connect provider (npm `oidc-provider`, a certified implementation) on
// localhost, standing in for Google in cola's browser tests. It serves discovery, keys, the
// authorization and token endpoints, and a plain login page of its own (nothing is loaded from
// the internet): any user name logs in, as `<name>@example.edu`.
//
// Configuration (environment): OIDC_PORT, OIDC_CLIENT_ID, OIDC_CLIENT_SECRET, OIDC_REDIRECT_URI,
// OIDC_LISTEN: the comma-separated addresses to listen on (default 127.0.0.1; the local
// Kubernetes cluster's test adds node 1's bridge address, where its Pods reach this machine),
// and OIDC_CLAIMS_IN: where the e-mail and name go, `id_token` (default: in the ID token too,
// as Google does) or `userinfo` (only from the UserInfo endpoint, as the specification says
// for claims of a scope when an access token is issued, and oidc-provider does by default).
// Prints `ready <issuer>` on stdout once it listens on all of them.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer } from 'node:http';

import Provider from 'oidc-provider';

const need = (name) => {
  const value = process.env[name];
  if (!value) {
    console.error(`missing ${name}`);
    process.exit(2);
  }
  return value;
};
const port = Number(need('OIDC_PORT'));
const issuer = `http://localhost:${port}`;
const clientId = need('OIDC_CLIENT_ID');
const clientSecret = need('OIDC_CLIENT_SECRET');
const redirectUri = need('OIDC_REDIRECT_URI');
const claimsIn = process.env.OIDC_CLAIMS_IN || 'id_token';
if (!['id_token', 'userinfo'].includes(claimsIn)) {
  console.error(`OIDC_CLAIMS_IN must be id_token or userinfo, not ${claimsIn}`);
  process.exit(2);
}

const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
// A key id of its own per start, as a real provider names each key it rotates in: a gateway that
// cached an earlier run's keys then knows to fetch them again.
const signingKey = {
  ...privateKey.export({ format: 'jwk' }),
  kid: `test-key-${randomBytes(8).toString('hex')}`,
  use: 'sig',
  alg: 'RS256',
};

const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const displayName = (login) => login.charAt(0).toUpperCase() + login.slice(1);

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirectUri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [signingKey] },
  cookies: { keys: [randomBytes(32).toString('hex')] },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // id_token: like Google, e-mail and name in the ID token itself; userinfo: only from UserInfo.
  conformIdTokenClaims: claimsIn === 'userinfo',
  pkce: { required: () => true },
  ttl: { AccessToken: 600, AuthorizationCode: 60, IdToken: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({
      sub: id,
      email: `${id}@example.edu`,
      email_verified: true,
      name: displayName(id),
    }),
  }),
});

function page(res, title, body) {
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head>
<body><h1>${title}</h1>${body}</body></html>`);
}

async function readForm(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

// Logs the user in and grants what the client asked for, in one step.
async function finish(req, res, details, accountId) {
  const { params } = details;
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(String(params.scope));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, {
    login: { accountId },
    consent: { grantId },
  }, { mergeWithLastSubmission: false });
}

const callback = provider.callback();
const server = createServer(async (req, res) => {
  const url = new URL(req.url, issuer);
  const match = url.pathname.match(/^\/interaction\/([^/]+)(\/login)?$/);
  if (!match) return callback(req, res);
  try {
    const details = await provider.interactionDetails(req, res);
    if (req.method === 'POST' && match[2]) {
      const form = await readForm(req);
      const login = (form.get('login') || '').trim().toLowerCase();
      if (!/^[a-z0-9][a-z0-9._-]{0,40}$/.test(login)) {
        return page(res, 'Sign in', '<p role="alert">Enter a user name.</p>');
      }
      return await finish(req, res, details, login);
    }
    if (details.prompt.name === 'consent' && details.session?.accountId) {
      return await finish(req, res, details, details.session.accountId);
    }
    return page(res, 'Sign in to the test provider', `
<form method="post" action="/interaction/${escapeHtml(details.uid)}/login">
  <p><label for="login">User name</label> <input id="login" name="login" autocomplete="username" autofocus></p>
  <p><button type="submit" id="sign-in">Sign in</button></p>
</form>
<p>Test provider for ${escapeHtml(details.params.client_id)}: any user name signs in.</p>`);
  } catch (error) {
    console.error(error);
    res.writeHead(400, { 'content-type': 'text/plain' });
    res.end(`interaction failed: ${error.message}`);
  }
});

const hosts = (process.env.OIDC_LISTEN || '127.0.0.1').split(',').map((host) => host.trim());
const servers = [server, ...hosts.slice(1).map(() => createServer(server.listeners('request')[0]))];
let listening = 0;
servers.forEach((each, index) => {
  each.on('error', (error) => {
    console.error(`cannot listen on ${hosts[index]}:${port}: ${error.message}`);
    process.exit(1);
  });
  each.listen(port, hosts[index], () => {
    listening += 1;
    if (listening === servers.length) console.log(`ready ${issuer}`);
  });
});
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => Promise.all(servers.map((each) => new Promise((done) => each.close(done))))
    .then(() => process.exit(0)));
}
