// Interop client: the official TypeScript SDK (1.32.2) authorizing against a
// real authorization server and our resource server.
//
//   node oauth_client.mjs SDK_DIR URL REDIRECT_URL interop|dcr
//
// SDK_DIR is the installed @modelcontextprotocol/sdk package directory (ESM
// resolution ignores NODE_PATH, so its modules are imported by path); URL is
// the MCP endpoint; REDIRECT_URL the loopback redirect URI (never listened
// on: the headless login below stops at it). With `interop` the provider
// holds the pre-registered public client `interop`; with `dcr` it holds
// nothing and the SDK registers by RFC 7591.
//
// The flow is the SDK's own: `connect()` gets a 401, discovers the metadata,
// and calls `redirectToAuthorization(url)`, where this script logs in and
// consents headlessly (a fetch with a cookie jar: /auth -> /interaction/{uid}
// -> login -> consent -> redirect with code, state and iss); the SDK then
// throws UnauthorizedError, the script calls `transport.finishAuth(code)` and
// connects again. A call needing more scope gets 403 insufficient_scope; the
// SDK re-authorizes with the challenged scope (the same hook), throws
// UnauthorizedError again, and after `finishAuth` the same call is retried
// on the same transport, hence the same Mcp-Session-Id. Every HTTP exchange
// goes through the transport's `fetch` option and is recorded.
//
// It prints one JSON object of what it saw and exits 0, or prints the failure
// to stderr and exits 1 (2 when the overall deadline passes).

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const DEADLINE_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const MAX_HOPS = 12;

const [sdkDir, url, redirectUrl, registration] = process.argv.slice(2);
if (!sdkDir || !url || !redirectUrl || !["interop", "dcr"].includes(registration)) {
  process.stderr.write("usage: node oauth_client.mjs SDK_DIR URL REDIRECT_URL interop|dcr\n");
  process.exit(64);
}

const deadline = setTimeout(() => {
  process.stderr.write(`ts oauth client: no result within ${DEADLINE_MS} ms\n`);
  process.exit(2);
}, DEADLINE_MS);

const sdk = (module) => import(pathToFileURL(join(sdkDir, "dist", "esm", module)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const { UnauthorizedError } = await sdk("client/auth.js");

const http = [];
const authorizationUrls = [];
const prompts = [];
const issOnRedirects = [];
const options = { timeout: REQUEST_TIMEOUT_MS };

/** The transport's fetch: every exchange of the SDK (MCP, metadata, token, registration). */
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  const headers = new Headers(init?.headers ?? {});
  http.push({
    method: init?.method ?? "GET",
    url: String(input instanceof Request ? input.url : input).split("?")[0],
    status: response.status,
    session: headers.get("mcp-session-id"),
    challenge: response.headers.get("www-authenticate"),
  });
  return response;
}

// -- the headless user agent ------------------------------------------------------------

const cookies = new Map();

function remember(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const eq = pair.indexOf("=");
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    if (/expires=Thu, 01 Jan 1970/i.test(line) || value === "") {
      cookies.delete(name);
    } else {
      cookies.set(name, value);
    }
  }
}

async function browse(target, init = {}) {
  const headers = new Headers(init.headers ?? {});
  if (cookies.size) {
    headers.set("cookie", [...cookies].map(([k, v]) => `${k}=${v}`).join("; "));
  }
  const response = await fetch(target, { ...init, headers, redirect: "manual" });
  remember(response);
  return response;
}

/** Follow the authorization URL through login and consent; the redirect's query. */
async function login(authorizationUrl, user = "alice") {
  let target = authorizationUrl;
  const issuerOrigin = new URL(authorizationUrl).origin;
  let response = await browse(target);
  for (let hop = 0; hop < MAX_HOPS; hop += 1) {
    if (response.status >= 300 && response.status < 400) {
      await response.body?.cancel();
      target = new URL(response.headers.get("location"), target).href;
      if (new URL(target).origin !== issuerOrigin) {
        return new URL(target).searchParams;
      }
      response = await browse(target);
      continue;
    }
    const page = await response.text();
    const prompt = /name="prompt" value="(login|consent)"/.exec(page);
    const action = /<form[^>]*action="([^"]+)"/.exec(page);
    if (response.status !== 200 || !prompt || !action) {
      throw new Error(`login: ${response.status} at ${target}: ${page.slice(0, 2000)}`);
    }
    prompts.push(prompt[1]);
    const form = new URLSearchParams({ prompt: prompt[1] });
    if (prompt[1] === "login") {
      form.set("login", user);
      form.set("password", "any");
    }
    const submit = new URL(action[1].replaceAll("&amp;", "&"), target).href;
    response = await browse(submit, {
      method: "POST",
      body: form,
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
  }
  throw new Error(`login: no redirect to the client after ${MAX_HOPS} hops`);
}

// -- the SDK's OAuthClientProvider --------------------------------------------------------

let pendingCode;
let pendingState;
let clientInformation =
  registration === "interop"
    ? { client_id: "interop", redirect_uris: [redirectUrl], token_endpoint_auth_method: "none" }
    : undefined;
let registered;
let tokens;
let codeVerifier;
let discovery;

const authProvider = {
  get redirectUrl() {
    return redirectUrl;
  },
  get clientMetadata() {
    return {
      client_name: "mcp-typescript-interop",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "none",
      application_type: "native",
    };
  },
  state() {
    pendingState = randomBytes(16).toString("base64url");
    return pendingState;
  },
  clientInformation() {
    return clientInformation;
  },
  saveClientInformation(info) {
    if (registered === undefined && registration === "dcr") {
      registered = info;
    }
    clientInformation = info;
  },
  tokens() {
    return tokens;
  },
  saveTokens(next) {
    tokens = next;
  },
  saveCodeVerifier(verifier) {
    codeVerifier = verifier;
  },
  codeVerifier() {
    return codeVerifier;
  },
  discoveryState() {
    return discovery;
  },
  saveDiscoveryState(state) {
    discovery = state;
  },
  async redirectToAuthorization(authorizationUrl) {
    authorizationUrls.push(authorizationUrl.href);
    const query = await login(authorizationUrl.href);
    issOnRedirects.push(query.get("iss"));
    if (query.get("error")) {
      throw new Error(`authorization refused: ${query.get("error")}`);
    }
    if (query.get("state") !== pendingState) {
      throw new Error("authorization: state mismatch");
    }
    pendingCode = query.get("code");
  },
};

/** Run *operation*; on UnauthorizedError (the SDK redirected) finish the grant and rerun. */
async function authorized(transport, operation) {
  try {
    return await operation();
  } catch (error) {
    if (!(error instanceof UnauthorizedError) || pendingCode === undefined) {
      throw error;
    }
    const code = pendingCode;
    pendingCode = undefined;
    await transport.finishAuth(code);
    return await operation();
  }
}

const text = (result) => {
  if (result.isError) {
    throw new Error(`tool error: ${JSON.stringify(result)}`);
  }
  return result.content[0].text;
};

async function main() {
  const out = { registration };
  const newTransport = () =>
    new StreamableHTTPClientTransport(new URL(url), { authProvider, fetch: recordingFetch });
  let transport = newTransport();
  let client = new Client({ name: "ts-oauth-interop", version: "0.0.1" });
  try {
    await client.connect(transport);
  } catch (error) {
    if (!(error instanceof UnauthorizedError) || pendingCode === undefined) {
      throw error;
    }
    // The first 401 came on `initialize`: no session yet, so a fresh transport
    // (a started one cannot be connected again) with the tokens the grant gave.
    const code = pendingCode;
    pendingCode = undefined;
    await transport.finishAuth(code);
    transport = newTransport();
    client = new Client({ name: "ts-oauth-interop", version: "0.0.1" });
    await client.connect(transport);
  }
  out.sessionId = transport.sessionId;
  out.whoami = text(await client.callTool({ name: "whoami", arguments: {} }, undefined, options));
  try {
    out.write = text(
      await authorized(transport, () =>
        client.callTool({ name: "write_note", arguments: { text: "x" } }, undefined, options),
      ),
    );
    out.writeError = null;
  } catch (error) {
    out.writeError = String(error?.message ?? error);
  }
  if (out.writeError === null) {
    out.after = text(await client.callTool({ name: "whoami", arguments: {} }, undefined, options));
  }
  out.sessionIdAfter = transport.sessionId;
  await transport.terminateSession();
  await client.close();
  out.prompts = prompts;
  out.authorizationUrls = authorizationUrls;
  out.issOnRedirects = issOnRedirects;
  out.registered = registered ?? null;
  out.http = http;
  return out;
}

try {
  const out = await main();
  clearTimeout(deadline);
  process.stdout.write(`${JSON.stringify(out)}\n`);
  process.exit(0);
} catch (error) {
  clearTimeout(deadline);
  process.stderr.write(`ts oauth client failed: ${error?.stack ?? error}\n`);
  process.stderr.write(`${JSON.stringify({ http, prompts, authorizationUrls })}\n`);
  process.exit(1);
}
