// payhook dev's console end to end, in Debian's headless Chromium driven by
// playwright-core (which never downloads a browser of its own here).
//
// The test starts its own `payhook dev` (the built binary, a temporary
// database, a free loopback port), sends events from the page's own picker,
// opens an object's timeline, dead-letters a poison event and redrives it
// with the button, and keeps screenshots in target/console-screenshots/.
// Whatever happens, the server and the browser are stopped at the end.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, mkdirSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { chromium } from 'playwright-core';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const binary = process.env.PAYHOOK_BIN || join(root, 'target/debug/payhook');
const shots = join(root, 'target/console-screenshots');
const SECRET = 'whsec_console_browser_test_0123456789';
// Without these, Chromium on a closed network stalls on its own background traffic.
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

let dev; let base; let context; let page; let work;
const pageErrors = [];

/** Starts `payhook dev` on a free port; resolves with its base URL. */
function startDev(db) {
  const child = spawn(binary, ['dev', '--port', '0', '--db', db, '--max-receive-count', '2', '--retry-backoff-ms', '10'], {
    env: { ...process.env, STRIPE_WEBHOOK_SECRET: SECRET, RUST_LOG: 'warn', EFFECTS_TARGET: 'log' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  child.log = () => log;
  return new Promise((ok, fail) => {
    const timer = setTimeout(() => fail(new Error(`payhook dev did not start:\n${log}`)), 30_000);
    child.on('exit', (code) => fail(new Error(`payhook dev exited (${code}):\n${log}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = line.match(/^payhook dev listening on (\S+)/);
      if (m) { clearTimeout(timer); ok([child, m[1]]); }
    });
  });
}

/** Delivers `event` signed as Stripe signs, as a provider would. */
async function deliver(event) {
  const body = JSON.stringify(event);
  const t = Math.floor(Date.now() / 1000);
  const v1 = createHmac('sha256', SECRET).update(`${t}.${body}`).digest('hex');
  const res = await fetch(`${base}/webhooks/stripe`, {
    method: 'POST', body, headers: { 'content-type': 'application/json', 'stripe-signature': `t=${t},v1=${v1}` },
  });
  return [res.status, await res.json()];
}

async function api(path) {
  const res = await fetch(`${base}${path}`);
  return res.json();
}

/** A header counter's text, once its own poll has had the time to show `expected` (5 s at most). */
async function counter(key, expected) {
  const cell = page.locator(`[data-counter="${key}"]`);
  await cell.filter({ hasText: new RegExp(`^${expected}$`) }).waitFor({ timeout: 5_000 }).catch(() => {});
  return cell.textContent();
}

async function shot(name) {
  await page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });
}

before(async () => {
  assert.ok(existsSync(binary), `no payhook binary at ${binary}: run cargo build -p payhook first`);
  assert.ok(existsSync('/usr/bin/chromium'), 'no /usr/bin/chromium: run scripts/browser.sh');
  mkdirSync(shots, { recursive: true });
  work = mkdtempSync(join(tmpdir(), 'payhook-console-'));
  [dev, base] = await startDev(join(work, 'dev.db'));
  context = await chromium.launchPersistentContext(join(work, 'chromium-profile'), {
    executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS, headless: true,
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(10_000);
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  page.on('console', (msg) => { if (msg.type() === 'error') pageErrors.push(msg.text()); });
});

after(async () => {
  await context?.close().catch(() => {});
  if (dev && dev.exitCode === null) {
    const exited = new Promise((ok) => dev.once('exit', ok));
    dev.kill('SIGTERM');
    await Promise.race([exited, new Promise((ok) => setTimeout(ok, 10_000))]);
    if (dev.exitCode === null) dev.kill('SIGKILL');
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test('events sent from the picker appear in the live log within about a second', async () => {
  await page.goto(`${base}/`);
  const picker = page.getByLabel('Event type (from payhook trigger --list)');
  await picker.selectOption('payment_intent.succeeded');
  const sentAt = Date.now();
  await page.getByRole('button', { name: 'Send', exact: true }).click();
  const row = page.locator('#event-list tbody tr', { hasText: 'payment_intent.succeeded' });
  await row.first().waitFor({ timeout: 5_000 });
  const appearedIn = Date.now() - sentAt;
  assert.ok(appearedIn < 2_500, `appeared after ${appearedIn} ms`);
  // The sequence's three events, each processed.
  await page.locator('#event-list tbody tr', { hasText: 'processed' }).nth(2).waitFor();
  assert.equal(await page.locator('#event-list tbody tr').count(), 3);
  // An event delivered from outside (as `payhook trigger` or Stripe would) shows up too.
  const [status] = await deliver({
    id: 'evt_console_outside', object: 'event', api_version: '2024-06-20', created: Math.floor(Date.now() / 1000),
    livemode: false, type: 'customer.created', data: { object: { id: 'cus_console_1', object: 'customer' } },
  });
  assert.equal(status, 200);
  await page.locator('#event-list tbody tr', { hasText: 'evt_console_outside' }).waitFor({ timeout: 3_000 });
  assert.equal(await counter('received', '4'), '4');
  assert.equal(await counter('ignored', '1'), '1');
  await shot('events-1280');
});

test('the log filters by stage, type and id', async () => {
  await page.getByLabel('Stage').selectOption('ignored');
  await page.waitForFunction(() => document.querySelectorAll('#event-list tbody tr').length === 1);
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#event-list tbody tr').length === 4);
  await page.getByLabel('Type', { exact: true }).fill('charge.*');
  await page.getByLabel('Type', { exact: true }).press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#event-list tbody tr').length === 1);
  assert.match(await page.locator('#event-list tbody').textContent(), /charge\.succeeded/);
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.getByLabel('Event or object id').fill('evt_console_outside');
  await page.getByLabel('Event or object id').press('Enter');
  await page.waitForFunction(() => document.querySelectorAll('#event-list tbody tr').length === 1);
  await page.getByRole('button', { name: 'Clear' }).click();
  await page.waitForFunction(() => document.querySelectorAll('#event-list tbody tr').length === 4);
});

test("an event's detail shows its verdict, routing, processing, body and effects", async () => {
  await page.locator('#event-list tbody tr', { hasText: 'payment_intent.succeeded' }).getByRole('link').first().click();
  await page.getByRole('heading', { name: 'Verification' }).waitFor();
  const main = page.locator('main');
  await main.getByText('fulfill queue').waitFor();
  await main.getByRole('heading', { name: 'Effects it caused' }).waitFor();
  assert.match(await main.textContent(), /fulfil/);
  assert.match(await main.locator('pre').last().textContent(), /"type": "payment_intent.succeeded"/);
  await shot('event-1280');
});

test("an object's timeline shows each event with the state after it, in arrival and created order", async () => {
  await page.locator('main').getByRole('link', { name: /^order pi_/ }).click();
  await page.getByRole('heading', { name: 'Timeline' }).waitFor();
  const rows = page.locator('#timeline tbody tr');
  assert.equal(await rows.count(), 3);
  assert.match(await rows.first().textContent(), /payment_intent\.created/);
  assert.match(await page.locator('main').textContent(), /replaying the events rebuilds the stored state/);
  // Keyboard: the order switch is a radio group.
  await page.getByLabel('created').check();
  assert.equal(await rows.count(), 3);
  await page.getByLabel('arrival').focus();
  await page.keyboard.press('Space');
  assert.ok(await page.getByLabel('arrival').isChecked());
  await page.locator('#timeline summary').last().click();
  assert.match(await page.locator('#timeline pre').last().textContent(), /"amount_received": 2000/);
  await shot('object-1280');
});

test('a poison event is dead-lettered and redriven with the button', async () => {
  const [status, answer] = await deliver({
    id: 'evt_console_poison', object: 'event', api_version: '2024-06-20', created: Math.floor(Date.now() / 1000),
    livemode: false, type: 'charge.dispute.created', data: { object: { id: 'dp_console_poison', object: 'dispute' } },
  });
  assert.equal(status, 200, JSON.stringify(answer));
  await page.getByRole('link', { name: /^Failures/ }).click();
  const letter = page.locator('#dead-letters tbody tr', { hasText: 'evt_console_poison' });
  await letter.waitFor({ timeout: 10_000 });
  assert.equal(await counter('failed', '1'), '1');
  await shot('failures-1280');
  // Keyboard: the button is reachable and pressed with Enter.
  await letter.getByRole('button', { name: /Redrive dispute-dlq/ }).focus();
  await page.keyboard.press('Enter');
  await page.getByRole('status').filter({ hasText: 'Redrove 1 message(s) from dispute-dlq' }).waitFor();
  // Still poison: received afresh, and back in the DLQ counting the redrive.
  const deadline = Date.now() + 10_000;
  let redrives = 0;
  while (Date.now() < deadline && redrives !== 1) {
    const dlq = await api('/api/dlq');
    redrives = dlq.dead_letters[0]?.redrives ?? 0;
    await new Promise((ok) => setTimeout(ok, 100));
  }
  assert.equal(redrives, 1);
});

test('the layout holds in a narrow window, every control has a label, and the page broke no rule', async () => {
  await page.setViewportSize({ width: 420, height: 900 });
  await page.goto('about:blank');
  await page.goto(`${base}/#/events`);
  await page.locator('#event-list tbody tr').first().waitFor();
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow} px at 420 px`);
  const unlabelled = await page.evaluate(() => [...document.querySelectorAll('input, select, textarea')]
    .filter((el) => !el.labels?.length && !el.getAttribute('aria-label')).map((el) => el.outerHTML));
  assert.deepEqual(unlabelled, []);
  // The first Tab reaches the skip link, which moves focus to the content.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'skip');
  await shot('events-420');
  await page.setViewportSize({ width: 1280, height: 900 });
  assert.deepEqual(pageErrors, [], 'no script errors or CSP violations');
});
