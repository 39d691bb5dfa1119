// The Express peer's check (express_server.js) as a Node 20 Lambda handler
// behind an API Gateway HTTP API (payload format 2.0): the exact body bytes,
// stripe.webhooks.constructEvent(body, header, secret), 200 after the check,
// 400 otherwise. Like the Express peer it persists nothing (no ledger, no
// queue): the lower bound of what such a handler costs.
// bench/scaling/scaling.py runs it under the same fake Runtime API as the
// Rust functions, through lambda_runtime.js.
'use strict';

const Stripe = require('stripe');

const stripe = new Stripe('sk_test_load_benchmark');
const secret = process.env.STRIPE_WEBHOOK_SECRET;

exports.handler = async (event) => {
  const body = Buffer.from(event.body || '', event.isBase64Encoded ? 'base64' : 'utf8');
  let verified;
  try {
    verified = stripe.webhooks.constructEvent(body, (event.headers || {})['stripe-signature'], secret);
  } catch (err) {
    return { statusCode: 400, body: `Webhook Error: ${err.message}` };
  }
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ received: true, id: verified.id, type: verified.type }),
  };
};
