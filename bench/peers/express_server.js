// The handler payhook replaces: Stripe's documented Express webhook endpoint
// (express.raw + stripe.webhooks.constructEvent), answering 200 after the check.
// It persists nothing, so it is the lower bound of what such a handler costs.
const express = require("express");
const Stripe = require("stripe");

const stripe = new Stripe("sk_test_load_benchmark");
const secret = process.env.STRIPE_WEBHOOK_SECRET;
const app = express();

app.get("/healthz", (_req, res) => res.send("ok"));
app.post("/webhooks/stripe", express.raw({ type: "application/json", limit: "1mb" }), (req, res) => {
  let event;
  try {
    event = stripe.webhooks.constructEvent(req.body, req.headers["stripe-signature"], secret);
  } catch (err) {
    res.status(400).send(`Webhook Error: ${err.message}`);
    return;
  }
  res.json({ received: true, id: event.id, type: event.type });
});

app.listen(Number(process.env.PORT || 4243), "127.0.0.1");
