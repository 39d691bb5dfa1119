// The console's shell: the header's counters and chart, the hash router, the
// "Send a test event" form, and a poll about once a second that refreshes
// whatever is on screen.

import { get, post } from './api.js';
import { h, replace } from './dom.js';
import * as views from './views.js';

const POLL_MILLIS = 1000;
let catalogue = [];
let refresh = null;
let route = '';

const COUNTERS = [
  ['received', 'Received', 'events in the ledger'],
  ['processed', 'Processed', 'events a processor recorded'],
  ['duplicates', 'Duplicates', 'repeat deliveries answered this run'],
  ['ignored', 'Ignored', 'events no processor takes'],
  ['failed', 'Failed', 'dead letters plus parked effects'],
];

function drawCounters(c) {
  replace(document.getElementById('counters'), COUNTERS.map(([key, label, about]) =>
    h('div', { class: `counter counter-${key}`, title: about }, h('dt', {}, label), h('dd', { 'data-counter': key }, String(c[key] ?? 0)))));
  const badge = document.getElementById('failed-badge');
  badge.textContent = c.failed ? String(c.failed) : '';
  badge.classList.toggle('alert', c.failed > 0);
  document.querySelector('.counter-failed')?.classList.toggle('nonzero', c.failed > 0);
}

function drawChart(t) {
  const svg = document.getElementById('chart');
  const n = t.received.length;
  const max = Math.max(1, ...t.received, ...t.processed);
  const w = 300 / n;
  const bars = [];
  for (let i = 0; i < n; i += 1) {
    for (const [series, offset] of [['received', 0.1], ['processed', 0.5]]) {
      const v = t[series][i];
      const height = (v / max) * 56;
      bars.push(h('rect', { class: series, x: (i * w + offset * w).toFixed(2), y: (60 - height).toFixed(2), width: (w * 0.38).toFixed(2), height: height.toFixed(2) },
        h('title', {}, `${v} ${series}`)));
    }
  }
  replace(svg, bars);
  const total = (a) => a.reduce((x, y) => x + y, 0);
  svg.setAttribute('aria-label', `Last 5 minutes: ${total(t.received)} received, ${total(t.processed)} processed; at most ${max} per 10 seconds`);
}

async function poll() {
  const live = document.getElementById('live');
  try {
    const o = await get('/api/console/overview');
    drawCounters(o.counters);
    drawChart(o.throughput);
    if (refresh) await refresh();
    live.textContent = `live · ${new Date().toLocaleTimeString([], { hour12: false })}`;
    live.classList.remove('down');
  } catch (err) {
    live.textContent = `offline: ${err.message}`;
    live.classList.add('down');
  }
  setTimeout(poll, POLL_MILLIS);
}

async function navigate() {
  const hash = location.hash || '#/events';
  const [path, search = ''] = hash.slice(1).split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  const query = new URLSearchParams(search);
  const main = document.getElementById('main');
  const tab = parts[0] || 'events';
  for (const a of document.querySelectorAll('nav.tabs a')) {
    if (a.dataset.tab === tab) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  // Focus moves to the content on a new page, not on the first load (where
  // the first Tab must reach the skip link).
  const changedPage = route !== '' && route.split('?')[0] !== path;
  route = hash;
  refresh = null;
  let next = null;
  if (tab === 'events' && parts.length === 3) await views.event(main, parts.slice(1));
  else if (tab === 'objects' && parts.length === 3) await views.object(main, parts.slice(1));
  else if (tab === 'objects') views.objects(main);
  else if (tab === 'failures') next = views.failures(main);
  else next = views.events(main, parts, query, catalogue);
  document.title = `payhook dev — ${parts.length > 1 ? parts[parts.length - 1] : tab}`;
  if (next) { refresh = next; await next(); }
  if (changedPage && document.activeElement === document.body) main.focus({ preventScroll: true });
}

async function setUpSend() {
  const form = document.getElementById('send-form');
  const picker = document.getElementById('send-type');
  const result = document.getElementById('send-result');
  try {
    catalogue = (await get('/api/catalogue')).groups;
  } catch (err) {
    replace(result, h('li', { class: 'error' }, `catalogue unavailable: ${err.message}`));
    return;
  }
  replace(picker, catalogue.map((g) => h('optgroup', { label: g.processor ? `${g.processor} processor` : 'ignored (no processor)' },
    g.types.map((t) => h('option', { value: t, selected: t === 'payment_intent.succeeded' }, t)))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const button = form.querySelector('button');
    button.disabled = true;
    try {
      const answer = await post('/api/trigger', { event: picker.value });
      replace(result, answer.sent.map((s) => h('li', {},
        h('a', { href: `#/events/stripe/${encodeURIComponent(s.id)}` }, s.type), ` → ${s.status} ${s.answer.outcome ?? s.answer.error ?? ''}`)));
    } catch (err) {
      replace(result, h('li', { class: 'error', role: 'alert' }, err.message));
    } finally {
      button.disabled = false;
    }
    if (refresh) await refresh();
  });
}

window.addEventListener('hashchange', navigate);
await setUpSend();
await navigate();
poll();
