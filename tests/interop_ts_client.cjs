// The TypeScript SDK's client (session era) against our server, for tests/test_interop_ts_sdk.py.
//
// Usage: node interop_ts_client.cjs <node_modules dir> <endpoint URL> <sse|json>
// Prints one JSON object on stdout: what the client saw. Talks only to the URL given.
"use strict";

const fs = require("node:fs");
const { createRequire } = require("node:module");
const path = require("node:path");

const [nodeModules, url, replyMode] = process.argv.slice(2);
const sdk = createRequire(path.join(nodeModules, "noop.js"));
const { Client } = sdk("@modelcontextprotocol/sdk/client/index.js");
const { StreamableHTTPClientTransport } = sdk("@modelcontextprotocol/sdk/client/streamableHttp.js");
const types = sdk("@modelcontextprotocol/sdk/types.js");
const manifest = path.join(nodeModules, "@modelcontextprotocol", "sdk", "package.json");
const sdkVersion = JSON.parse(fs.readFileSync(manifest, "utf8")).version;

function text(result) {
  return result.content.map((block) => block.text).join("\n");
}

async function main() {
  const seen = { sdkVersion, progress: [], logs: [], asked: [] };
  const client = new Client(
    { name: "ts-interop", version: "1.0.0" },
    { capabilities: { sampling: {}, elicitation: {}, roots: {} } },
  );
  client.setRequestHandler(types.CreateMessageRequestSchema, async (request) => {
    seen.asked.push(`sample:${request.params.messages[0].content.text}`);
    return { role: "assistant", content: { type: "text", text: "forty-two" }, model: "ts-model" };
  });
  client.setRequestHandler(types.ElicitRequestSchema, async (request) => {
    seen.asked.push(`elicit:${request.params.message}`);
    return { action: "accept", content: { name: "Ada" } };
  });
  client.setRequestHandler(types.ListRootsRequestSchema, async () => {
    seen.asked.push("roots");
    return { roots: [{ uri: "file:///work/project", name: "project" }] };
  });
  client.setNotificationHandler(types.LoggingMessageNotificationSchema, (notification) => {
    seen.logs.push(`${notification.params.level}:${JSON.stringify(notification.params.data)}`);
  });
  let nudged = false;
  client.setNotificationHandler(types.ToolListChangedNotificationSchema, () => {
    nudged = true;
  });

  const transport = new StreamableHTTPClientTransport(new URL(url));
  await client.connect(transport);
  seen.protocolVersion = transport.protocolVersion;
  seen.sessionId = transport.sessionId;
  seen.serverVersion = client.getServerVersion();
  seen.instructions = client.getInstructions();
  seen.capabilities = Object.keys(client.getServerCapabilities()).sort();
  if (replyMode === "json") {
    // A session's messages then travel on the GET stream, which the client opens in the
    // background after initialize: wait until it delivers (as the Python tests' connected()).
    const deadline = Date.now() + 5000;
    while (!nudged) {
      if (Date.now() > deadline) throw new Error("the GET stream never delivered");
      await client.callTool({ name: "nudge", arguments: {} });
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  const options = { timeout: 5000 };
  seen.tools = (await client.listTools()).tools.map((tool) => tool.name).sort();
  await client.setLoggingLevel("info");
  const results = [];
  results.push(text(await client.callTool({ name: "add", arguments: { a: 40 } })));
  results.push(
    text(
      await client.callTool({ name: "count_up", arguments: { steps: 3 } }, undefined, {
        ...options,
        onprogress: (progress) => seen.progress.push(progress.progress),
      }),
    ),
  );
  results.push(text(await client.callTool({ name: "chatty", arguments: {} })));
  results.push(text(await client.callTool({ name: "ask_model", arguments: { prompt: "hi" } })));
  const asked = await client.callTool({ name: "ask_user", arguments: { question: "Your name?" } });
  results.push(JSON.stringify(asked.structuredContent));
  results.push(text(await client.callTool({ name: "roots", arguments: {} })));
  results.push(text(await client.callTool({ name: "whoami", arguments: {} })));
  results.push((await client.readResource({ uri: "mem://greeting" })).contents[0].text);
  const prompt = await client.getPrompt({ name: "greet", arguments: { name: "Ada" } });
  results.push(prompt.messages[0].content.text);
  try {
    await client.callTool({ name: "no_such_tool", arguments: {} });
    results.push("no error");
  } catch (error) {
    results.push(`error ${error.code}`);
  }
  seen.results = results;

  await transport.terminateSession();
  await client.close();
  process.stdout.write(JSON.stringify(seen) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
