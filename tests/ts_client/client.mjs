// Interop client: the official TypeScript SDK (1.32.2, session era) against our server.
//
//   node client.mjs SDK_DIR URL
//
// SDK_DIR is the installed @modelcontextprotocol/sdk package directory (ESM
// resolution ignores NODE_PATH, so its modules are imported by path); URL is
// the server's MCP endpoint. The script runs one session through initialize,
// tools (progress, logging, sampling, elicitation, roots, a tool error),
// resources, prompts, completion and ping; then a JSON-RPC error (unknown
// tool), which this SDK follows by resuming the finished SSE stream (see
// `settleAfterError`); then it ends the session with DELETE. Every HTTP
// exchange is recorded through the transport's `fetch` option. It prints one
// JSON object of what it saw to stdout and exits 0, or prints the failure to
// stderr and exits 1 (2 when the overall deadline passes).

import { join } from "node:path";
import { pathToFileURL } from "node:url";

const DEADLINE_MS = 30_000;
const REQUEST_TIMEOUT_MS = 10_000;
const SETTLE_MS = 10_000;

const [sdkDir, url] = process.argv.slice(2);
if (!sdkDir || !url) {
  process.stderr.write("usage: node client.mjs SDK_DIR URL\n");
  process.exit(64);
}

const deadline = setTimeout(() => {
  process.stderr.write(`ts client: no result within ${DEADLINE_MS} ms\n`);
  process.exit(2);
}, DEADLINE_MS);

const sdk = (module) => import(pathToFileURL(join(sdkDir, "dist", "esm", module)).href);
const { Client } = await sdk("client/index.js");
const { StreamableHTTPClientTransport } = await sdk("client/streamableHttp.js");
const types = await sdk("types.js");

/** Everything the client observed, in arrival order (notifications vs. results). */
const events = [];
const transportErrors = [];
const http = [];
const serverRequests = [];
const options = { timeout: REQUEST_TIMEOUT_MS };

const client = new Client(
  { name: "ts-interop-client", version: "1.32.2" },
  {
    capabilities: {
      sampling: {},
      elicitation: { form: {} },
      roots: { listChanged: true },
    },
  },
);
client.onerror = (error) =>
  transportErrors.push({ name: error?.name, message: error?.message, code: error?.code ?? null });

/** `fetch`, recording each exchange (and the body of each HTTP error) in `http`. */
async function recordingFetch(input, init = {}) {
  const headers = new Headers(init.headers);
  let rpc = null;
  if (typeof init.body === "string") {
    const body = JSON.parse(init.body);
    rpc = Array.isArray(body) ? "batch" : { method: body.method ?? null, id: body.id ?? null };
  }
  const entry = {
    method: init.method ?? "GET",
    rpc,
    session: headers.has("mcp-session-id"),
    lastEventId: headers.get("last-event-id"),
  };
  http.push(entry);
  const response = await fetch(input, init);
  entry.status = response.status;
  entry.contentType = response.headers.get("content-type");
  if (response.status >= 400) {
    const text = await response.clone().text();
    try {
      entry.error = JSON.parse(text);
    } catch {
      entry.error = text;
    }
  }
  return response;
}

client.setNotificationHandler(types.LoggingMessageNotificationSchema, (notification) => {
  const { level, logger, data } = notification.params;
  events.push({ kind: "log", level, logger: logger ?? null, data });
});

client.setRequestHandler(types.CreateMessageRequestSchema, (request) => {
  const { messages, maxTokens, systemPrompt } = request.params;
  serverRequests.push({ method: request.method, messages, maxTokens, systemPrompt });
  events.push({ kind: "request", method: request.method });
  const prompt = messages.map((m) => m.content?.text ?? "").join(" ");
  return {
    role: "assistant",
    model: "ts-model",
    content: { type: "text", text: `echo: ${prompt}` },
    stopReason: "endTurn",
  };
});

client.setRequestHandler(types.ElicitRequestSchema, (request) => {
  const { message, requestedSchema, mode } = request.params;
  serverRequests.push({ method: request.method, message, requestedSchema, mode: mode ?? null });
  events.push({ kind: "request", method: request.method });
  return { action: "accept", content: { name: "Ada" } };
});

client.setRequestHandler(types.ListRootsRequestSchema, (request) => {
  serverRequests.push({ method: request.method });
  events.push({ kind: "request", method: request.method });
  return { roots: [{ uri: "file:///work/project", name: "project" }] };
});

async function call(name, args) {
  const result = await client.callTool({ name, arguments: args }, undefined, {
    ...options,
    onprogress: (progress) => events.push({ kind: "progress", tool: name, ...progress }),
  });
  events.push({ kind: "result", tool: name });
  return result;
}

const HELLO_LOGGER = "hello";
const HELLO_ATTEMPTS = 50;

/**
 * Call `hello` until its log message arrives: in the server's json reply mode
 * every server-to-client message travels on the GET stream, which the SDK
 * opens in the background after `initialized`; what is sent before it is
 * attached is not delivered. Returns the number of calls (1 in sse mode).
 */
async function untilDelivered() {
  const seen = () => events.some((e) => e.kind === "log" && e.logger === HELLO_LOGGER);
  for (let attempt = 1; attempt <= HELLO_ATTEMPTS; attempt++) {
    await client.callTool({ name: "hello", arguments: {} }, undefined, options);
    for (let poll = 0; poll < 5 && !seen(); poll++) {
      await sleep(10);
    }
    if (seen()) return attempt;
  }
  throw new Error(`no log message from 'hello' after ${HELLO_ATTEMPTS} calls`);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * After a JSON-RPC error that came on an SSE response, wait until the SDK has
 * given up resuming that stream. 1.32.2 treats only *result* responses as the
 * end of a request's stream (`isJSONRPCResultResponse` in `_handleSseStream`),
 * so a stream that carried an error response and a priming event id is
 * resumed with GET + Last-Event-ID, `maxRetries` (2) times, each failure and
 * the giving up reported to `onerror`.
 */
async function settleAfterError(post) {
  if (!post?.contentType?.startsWith("text/event-stream")) return 0;
  const start = Date.now();
  const gaveUp = () => transportErrors.some((e) => e.message?.startsWith("Maximum reconnection"));
  while (!gaveUp()) {
    if (Date.now() - start > SETTLE_MS) {
      throw new Error(`the SDK still resumes the error's stream after ${SETTLE_MS} ms`);
    }
    await sleep(10);
  }
  return Date.now() - start;
}

async function main() {
  const transport = new StreamableHTTPClientTransport(new URL(url), { fetch: recordingFetch });
  await client.connect(transport, options);
  const out = {
    protocolVersion: transport.protocolVersion ?? null,
    sessionId: transport.sessionId ?? null,
    serverInfo: client.getServerVersion() ?? null,
    serverCapabilities: client.getServerCapabilities() ?? null,
    instructions: client.getInstructions() ?? null,
  };

  await client.setLoggingLevel("debug", options);
  out.helloCalls = await untilDelivered();
  out.ping = await client.ping(options);

  const tools = await client.listTools(undefined, options);
  out.tools = tools.tools.map((t) => t.name).sort();
  out.add = await call("add", { a: 40, b: 2 });
  out.work = await call("work", { steps: 3 });
  out.failure = await call("fail", { reason: "on purpose" });
  out.sampled = await call("ask_model", { prompt: "hi there" });
  out.elicited = await call("ask_user", { question: "Your name?" });
  out.roots = await call("roots", {});
  const resources = await client.listResources(undefined, options);
  out.resources = resources.resources.map((r) => r.uri).sort();
  const templates = await client.listResourceTemplates(undefined, options);
  out.resourceTemplates = templates.resourceTemplates.map((t) => t.uriTemplate).sort();
  out.read = await client.readResource({ uri: "mem://greeting" }, options);
  out.readTemplate = await client.readResource({ uri: "mem://users/7/profile" }, options);

  const prompts = await client.listPrompts(undefined, options);
  out.prompts = prompts.prompts.map((p) => p.name).sort();
  out.prompt = await client.getPrompt(
    { name: "greet", arguments: { name: "Ada", style: "formal" } },
    options,
  );
  out.completion = await client.complete(
    {
      ref: { type: "ref/prompt", name: "greet" },
      argument: { name: "style", value: "f" },
    },
    options,
  );

  out.transportErrors = [...transportErrors];
  transportErrors.length = 0;

  // A JSON-RPC error: the SDK rejects the call, then (SSE) resumes its stream.
  const errorRequests = http.length;
  out.unknownTool = await client
    .callTool({ name: "no_such_tool", arguments: {} }, undefined, options)
    .then(
      (result) => ({ result }),
      (error) => ({ code: error?.code ?? null, message: String(error?.message) }),
    );
  const errorPost = http.slice(errorRequests).find((e) => e.rpc?.method === "tools/call");
  out.settleMs = await settleAfterError(errorPost);
  out.errorPhase = { http: http.slice(errorRequests), transportErrors: [...transportErrors] };
  transportErrors.length = 0;
  out.afterError = await call("add", { a: 1, b: 1 });

  const deleteRequests = http.length;
  await transport.terminateSession();
  out.sessionIdAfterDelete = transport.sessionId ?? null;
  await client.close();

  out.deletePhase = { http: http.slice(deleteRequests), transportErrors: [...transportErrors] };
  out.http = http;
  out.events = events;
  out.serverRequests = serverRequests;
  return out;
}

try {
  const out = await main();
  clearTimeout(deadline);
  process.stdout.write(JSON.stringify(out) + "\n");
  process.exit(0);
} catch (error) {
  clearTimeout(deadline);
  process.stderr.write(`ts client failed: ${error?.stack ?? error}\n`);
  process.stderr.write(`transport errors: ${JSON.stringify(transportErrors)}\n`);
  process.exit(1);
}
