// Times Stripe's official Node check, stripe.webhooks.constructEvent(body,
// header, secret), on the payloads the Rust bench wrote (same bytes, same
// Stripe-Signature headers, same secret), and prints µs per call.
//
// Usage: node constructEvent.js [payload-dir]
//   payload-dir defaults to $CARGO_TARGET_DIR/bench-payloads, else
//   <repo>/target/bench-payloads. It must hold manifest.json, written by
//   `cargo bench -p payhook-shared --all-features --bench receive_path`.
// Also writes node.tsv (label, bytes, ns per call) into that directory.

'use strict';

const fs = require('node:fs');
const path = require('node:path');
const Stripe = require('stripe');

function payloadDir() {
  if (process.argv[2]) return path.resolve(process.argv[2]);
  const target = process.env.CARGO_TARGET_DIR || path.join(__dirname, '..', '..', 'target');
  return path.join(target, 'bench-payloads');
}

// Median ns per call over 31 batches, after a warm-up that lets V8 optimise.
function medianNs(fn) {
  const warmUntil = process.hrtime.bigint() + 300_000_000n;
  let calls = 0;
  while (process.hrtime.bigint() < warmUntil) {
    fn();
    calls += 1;
  }
  const perBatch = Math.max(1, Math.floor(calls / 30));
  const samples = [];
  for (let s = 0; s < 31; s += 1) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < perBatch; i += 1) fn();
    samples.push(Number(process.hrtime.bigint() - start) / perBatch);
  }
  samples.sort((a, b) => a - b);
  return samples[15];
}

function main() {
  const dir = payloadDir();
  const manifestPath = path.join(dir, 'manifest.json');
  if (!fs.existsSync(manifestPath)) {
    console.error(`${manifestPath} not found: run the Rust bench first ` +
      '(cargo bench -p payhook-shared --all-features --bench receive_path)');
    process.exit(2);
  }
  const manifest = JSON.parse(fs.readFileSync(manifestPath, 'utf8'));
  // The key is never used to call the API: constructEvent is local.
  const stripe = new Stripe('sk_test_bench_not_a_real_key');
  // "Now" is the signing time, as in the Rust bench, so tolerance never trips.
  const receivedAt = manifest.timestamp * 1000;

  const stripeVersion = JSON.parse(
    fs.readFileSync(path.join(__dirname, 'node_modules', 'stripe', 'package.json'), 'utf8')).version;
  console.log(`stripe-node ${stripeVersion}, node ${process.version}`);
  console.log('constructEvent(Buffer body, header, secret) per call (median)');
  console.log(`${'size'.padStart(5)} ${'bytes'.padStart(7)} ${'us_per_call'.padStart(12)}`);
  let tsv = 'label\tbytes\tconstruct_ns\n';
  for (const p of manifest.payloads) {
    const body = fs.readFileSync(path.join(dir, p.file));
    const event = stripe.webhooks.constructEvent(body, p.header, manifest.secret, 300, undefined, receivedAt);
    if (event.type !== p.event_type) throw new Error(`${p.file}: parsed type ${event.type}`);
    const ns = medianNs(() =>
      stripe.webhooks.constructEvent(body, p.header, manifest.secret, 300, undefined, receivedAt));
    console.log(`${p.label.padStart(5)} ${String(body.length).padStart(7)} ${(ns / 1000).toFixed(2).padStart(12)}`);
    tsv += `${p.label}\t${body.length}\t${Math.round(ns)}\n`;
  }
  fs.writeFileSync(path.join(dir, 'node.tsv'), tsv);
}

main();
