// The merchant's endpoint for `bench/load.sh --effects`: answers every
// effect payhook POSTs with 204 at once, as a consumer that queues its work
// would, and counts them. It checks each one carries the Standard Webhooks
// headers and every 100th one's signature (HMAC-SHA256 of
// "{id}.{timestamp}.{body}" with the secret's base64 key), so the figure is
// for real, signed deliveries without the sink becoming the bottleneck.
//
//   EFFECTS_SIGNING_SECRET=whsec_… PORT=… node bench/load/effects_sink.js
//   GET /count -> {"count", "distinct", "bad", "first_ms", "last_ms"}
"use strict";

const crypto = require("node:crypto");
const http = require("node:http");

const secret = process.env.EFFECTS_SIGNING_SECRET || "";
const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
const seen = new Set();
let count = 0;
let bad = 0;
let first = 0;
let last = 0;

function signed(id, timestamp, body, signature) {
  const mac = crypto.createHmac("sha256", key).update(`${id}.${timestamp}.`).update(body).digest("base64");
  return signature.split(" ").some((s) => s === `v1,${mac}`);
}

const server = http.createServer((req, res) => {
  if (req.method === "GET" && req.url === "/count") {
    res.setHeader("content-type", "application/json");
    res.end(JSON.stringify({ count, distinct: seen.size, bad, first_ms: first, last_ms: last }));
    return;
  }
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const id = req.headers["webhook-id"];
    const timestamp = req.headers["webhook-timestamp"];
    const signature = req.headers["webhook-signature"] || "";
    count += 1;
    if (!id || !timestamp || (count % 100 === 1 && !signed(id, timestamp, Buffer.concat(chunks), signature))) {
      bad += 1;
    }
    seen.add(id);
    const now = Date.now();
    if (!first) first = now;
    last = now;
    res.statusCode = 204;
    res.end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), "127.0.0.1");
