// The authorization server of the auth tests: oidc-provider 9.13.3 on loopback.
//
//   node provider.mjs NODE_MODULES [--port N] [--access-token-ttl SECONDS]
//                     [--jwks FILE] [--scopes "a b"] [--svc-secret S]
//
// NODE_MODULES is the installed node_modules directory (ESM resolution ignores
// NODE_PATH, so oidc-provider is imported by path). The issuer is
// http://127.0.0.1:PORT (--port 0, the default, takes a free port; a restart
// with rotated keys passes the old port so the issuer stays the same).
//
// Clients:
//   interop  public, native, loopback redirects (any port) to /callback,
//            authorization_code + refresh_token (refresh needs offline_access)
//   svc      confidential (client_secret_basic), client_credentials; also
//            the resource server's credentials for introspection
// Dynamic registration (/reg) is open; introspection (/token/introspection) on.
//
// Every resource indicator on 127.0.0.1, localhost or [::1] is a resource
// server with the configured scopes: RFC 9068 JWT access tokens (typ at+jwt,
// aud = the indicator), or opaque tokens when the indicator's path ends in
// /opaque (JWTs cannot be introspected). Other indicators get invalid_target.
//
// --jwks FILE: the private signing keys ({"keys": [...]}); when the file does
// not exist a fresh ES256 key is generated and written there, so a restart
// with another file rotates the keys and one with the same file keeps them.
// --access-token-ttl applies to every resource's tokens (default: the
// OIDC_ACCESS_TOKEN_TTL environment variable, else 300 s).
//
// When listening it prints one line of JSON to stdout,
//   {"ready": true, "issuer": "http://127.0.0.1:PORT", "pid": N, "kids": [...]}
// and nothing else there; oidc-provider's warnings go to stderr. SIGTERM or
// SIGINT ends it.

import { generateKeyPairSync, randomBytes, randomUUID } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:http";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

const [nodeModules, ...rest] = process.argv.slice(2);
if (!nodeModules) {
  process.stderr.write("usage: node provider.mjs NODE_MODULES [options]\n");
  process.exit(64);
}
const { values: opts } = parseArgs({
  args: rest,
  options: {
    port: { type: "string", default: "0" },
    "access-token-ttl": { type: "string", default: process.env.OIDC_ACCESS_TOKEN_TTL ?? "300" },
    jwks: { type: "string" },
    scopes: { type: "string", default: "notes:read notes:write" },
    "svc-secret": { type: "string", default: "svc-secret" },
  },
});
const port = Number.parseInt(opts.port, 10);
const accessTokenTTL = Number.parseInt(opts["access-token-ttl"], 10);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  throw new Error(`--port: not a port: ${opts.port}`);
}
if (!Number.isInteger(accessTokenTTL) || accessTokenTTL < 1) {
  throw new Error(`--access-token-ttl: not a positive integer: ${opts["access-token-ttl"]}`);
}
const resourceScopes = opts.scopes.split(" ").filter(Boolean);

const { default: Provider, errors } = await import(
  pathToFileURL(join(nodeModules, "oidc-provider", "lib", "index.js")).href
);

function newKeySet() {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const jwk = privateKey.export({ format: "jwk" });
  return { keys: [{ ...jwk, kid: randomUUID(), alg: "ES256", use: "sig" }] };
}

function loadKeySet(path) {
  if (path === undefined) {
    return newKeySet();
  }
  if (existsSync(path)) {
    return JSON.parse(readFileSync(path, "utf8"));
  }
  const jwks = newKeySet();
  writeFileSync(path, JSON.stringify(jwks), { mode: 0o600 });
  return jwks;
}

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]"]);

function resourceServer(indicator) {
  let url;
  try {
    url = new URL(indicator);
  } catch {
    throw new errors.InvalidTarget("resource indicator is not a URL");
  }
  if (!LOOPBACK.has(url.hostname)) {
    throw new errors.InvalidTarget("only loopback resource servers are known here");
  }
  const opaque = url.pathname.replace(/\/+$/, "").endsWith("/opaque");
  return {
    scope: resourceScopes.join(" "),
    audience: indicator,
    accessTokenTTL,
    accessTokenFormat: opaque ? "opaque" : "jwt",
    ...(opaque ? {} : { jwt: { sign: { alg: "ES256" } } }),
  };
}

const jwks = loadKeySet(opts.jwks);
const server = createServer();
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(port, "127.0.0.1", resolve);
});
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "interop",
      application_type: "native",
      token_endpoint_auth_method: "none",
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      redirect_uris: ["http://127.0.0.1/callback", "http://localhost/callback"],
    },
    {
      client_id: "svc",
      client_secret: opts["svc-secret"],
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
    },
  ],
  clientDefaults: {
    grant_types: ["authorization_code"],
    id_token_signed_response_alg: "ES256",
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
  },
  responseTypes: ["code"],
  jwks,
  cookies: { keys: [randomBytes(32).toString("base64url")] },
  scopes: ["openid", "offline_access", ...resourceScopes],
  features: {
    devInteractions: { enabled: true },
    clientCredentials: { enabled: true },
    introspection: { enabled: true },
    registration: { enabled: true },
    revocation: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: () => true,
      getResourceServerInfo: (_ctx, indicator) => resourceServer(indicator),
    },
  },
  ttl: {
    AccessToken: accessTokenTTL,
    ClientCredentials: accessTokenTTL,
  },
});
server.on("request", provider.callback());

function stop() {
  server.close(() => process.exit(0));
  server.closeAllConnections();
  setTimeout(() => process.exit(0), 2_000).unref();
}
process.on("SIGTERM", stop);
process.on("SIGINT", stop);

process.stdout.write(
  `${JSON.stringify({ ready: true, issuer, pid: process.pid, kids: jwks.keys.map((k) => k.kid) })}\n`,
);
