// The console's pages. Each render function takes the main element and the
// route's parts, fetches what it shows, and returns a refresh function (or
// nothing) that the poller calls about once a second.

import { get, post, seg, ApiError } from './api.js';
import { h, replace, time, secs, badge, facts, table, code } from './dom.js';

const STAGES = ['receiving', 'ignored', 'queued', 'in_flight', 'retrying', 'dead_letter', 'processed'];
const KINDS = ['order', 'subscription', 'dispute', 'payout', 'account'];

const eventHref = (provider, id) => `#/events/${seg(provider)}/${seg(id)}`;
const objectHref = (kind, id) => `#/objects/${seg(kind)}/${seg(id)}`;

function link(href, text, cls) {
  return h('a', { href, class: cls }, text);
}

function failure(err) {
  const text = err instanceof ApiError ? `${err.message} (${err.status})` : String(err);
  return h('p', { class: 'error', role: 'alert' }, text);
}

// --- events -----------------------------------------------------------------

/** The live event log with its filters; the filters live in the URL's query. */
export function events(main, _parts, query, catalogue) {
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter events' },
    field('f-type', 'Type', h('input', { id: 'f-type', name: 'type', list: 'f-types', value: query.get('type') || '', placeholder: 'e.g. invoice.* ', autocomplete: 'off' })),
    h('datalist', { id: 'f-types' }, catalogue.flatMap((g) => g.types).map((t) => h('option', { value: t }))),
    field('f-provider', 'Provider', select('f-provider', 'provider', ['', 'stripe', 'standard'], query.get('provider'), 'any')),
    field('f-stage', 'Stage', select('f-stage', 'stage', ['', ...STAGES], query.get('stage'), 'any')),
    field('f-q', 'Event or object id', h('input', { id: 'f-q', name: 'q', type: 'search', value: query.get('q') || '', placeholder: 'evt_… or pi_…', autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Filter'),
    h('button', { type: 'button', class: 'secondary', onclick: () => { location.hash = '#/events'; } }, 'Clear'));
  const apply = () => {
    const params = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (String(v).trim()) params.set(k, String(v).trim());
    const q = params.toString();
    location.hash = `#/events${q ? `?${q}` : ''}`;
  };
  form.addEventListener('submit', (e) => { e.preventDefault(); apply(); });
  for (const sel of form.querySelectorAll('select')) sel.addEventListener('change', apply);
  const list = h('div', { id: 'event-list' });
  replace(main, h('h2', {}, 'Events'), form, list);

  const params = new URLSearchParams(query);
  params.set('limit', '100');
  let last = '';
  const refresh = async () => {
    try {
      const data = await get(`/api/events?${params}`);
      const text = JSON.stringify(data.events);
      if (text === last) return;
      last = text;
      replace(list, table('Events, newest first', ['Received', 'Type', 'Event', 'Object', 'Stage', 'Attempts'],
        data.events.map((e) => [
          time(e.received_at_millis),
          e.type,
          link(eventHref(e.provider, e.id), e.id, 'mono'),
          objectCell(e),
          badge(e.stage),
          String(e.attempts),
        ]), 'No events match. Send a test event, or run `payhook trigger`.'));
    } catch (err) { replace(list, failure(err)); }
  };
  return refresh;
}

function objectCell(e) {
  const touched = e.processing.find((p) => p.object);
  if (touched) return link(objectHref(touched.object.kind, touched.object.id), touched.object.id, 'mono');
  return e.object_id ? h('span', { class: 'mono muted' }, e.object_id) : '—';
}

function field(id, label, control) {
  return h('div', { class: 'field' }, h('label', { for: id }, label), control);
}

function select(id, name, values, current, emptyLabel) {
  return h('select', { id, name }, values.map((v) => h('option', { value: v, selected: (current || '') === v }, v === '' ? emptyLabel : v.replace(/_/g, ' '))));
}

// --- event detail -----------------------------------------------------------

/** One event: verdict, ledger, routing, processing, body, effects. */
export async function event(main, [provider, id]) {
  replace(main, h('p', {}, 'Loading…'));
  let data;
  try { data = await get(`/api/console/events/${seg(provider)}/${seg(id)}`); } catch (err) { replace(main, back(), failure(err)); return; }
  const e = data.event;
  const delivery = e.delivery;
  replace(main,
    back(),
    h('h2', {}, e.type, ' ', h('span', { class: 'mono muted' }, e.id)),
    h('section', { 'aria-labelledby': 'ev-verdict' },
      h('h3', { id: 'ev-verdict' }, 'Verification'),
      facts([
        ['Verdict', h('span', {}, badge('verified'), ' ', data.verdict.scheme)],
        ['Deliveries this run', data.deliveries.length ? h('ul', { class: 'plain' }, data.deliveries.map((d) => h('li', {}, `${time(d.at_millis)} → ${d.status} ${d.outcome}`))) : 'none recorded (received before this run)'],
      ])),
    h('section', { 'aria-labelledby': 'ev-ledger' },
      h('h3', { id: 'ev-ledger' }, 'Ledger and routing'),
      facts([
        ['Stage', badge(e.stage)],
        ['Ledger status', e.status],
        ['Claims (attempts)', String(e.attempts)],
        ['Created', secs(e.created)],
        ['Received', time(e.received_at_millis)],
        ['Routed to', e.queue ? `${e.queue} queue` : (e.ignore_reason ? `nothing: ${e.ignore_reason}` : '—')],
        ['Message', e.message_id],
        delivery && ['Queue message', `${delivery.state.replace(/_/g, ' ')}, received ${delivery.receive_count}×, redriven ${delivery.redrives}×${delivery.last_error ? ` — last error: ${delivery.last_error}` : ''}`],
        ['Object', e.object_id],
        ['Mode', e.livemode === null ? '—' : (e.livemode ? 'live' : 'test')],
      ])),
    h('section', { 'aria-labelledby': 'ev-proc' },
      h('h3', { id: 'ev-proc' }, 'What each processor made of it'),
      table('Processing', ['Processor', 'Outcome', 'Object', 'When'], e.processing.map((p) => [
        p.processor, badge(p.outcome),
        p.object ? link(objectHref(p.object.kind, p.object.id), `${p.object.kind} ${p.object.id}`) : '—',
        time(p.at_millis),
      ]), 'No processor has recorded it yet.')),
    h('section', { 'aria-labelledby': 'ev-fx' },
      h('h3', { id: 'ev-fx' }, 'Effects it caused'),
      effectsTable(data.effects, false)),
    h('section', { 'aria-labelledby': 'ev-body' },
      h('h3', { id: 'ev-body' }, 'Raw body'),
      data.body === null
        ? h('p', { class: 'empty' }, 'No longer held: payhook dev keeps the bodies of events received since it started, and the database keeps them only while queued.')
        : code(`JSON as received (${data.body_source})`, data.body, true)));
}

function back() {
  return h('p', {}, h('a', { href: '#/events' }, '← All events'));
}

function effectsTable(effects, withEvent) {
  return table('Effects', ['Seq', 'Effect', withEvent ? 'Event' : null, 'Status', 'Attempts', 'Delivered', 'Last error'].filter(Boolean),
    effects.map((f) => [
      h('span', { class: 'mono' }, `#${f.seq}`),
      code(effectName(f.effect), JSON.stringify(f.effect, null, 2)),
      withEvent ? link(eventHref('stripe', f.event_id), f.event_type, 'mono') : null,
      badge(f.status),
      String(f.attempts),
      time(f.delivered_at_millis),
      f.last_error || '—',
    ].filter((c) => c !== null)), 'No effects.');
}

function effectName(effect) {
  if (effect && typeof effect === 'object') return effect.effect || effect.kind || effect.type || Object.keys(effect)[0] || 'effect';
  return String(effect);
}

// --- objects ----------------------------------------------------------------

/** A lookup form for objects. */
export function objects(main) {
  const form = h('form', { class: 'filters', 'aria-label': 'Open an object' },
    field('o-kind', 'Kind', select('o-kind', 'kind', KINDS, 'order', '')),
    field('o-id', 'Id', h('input', { id: 'o-id', name: 'id', required: true, placeholder: 'pi_…, sub_…, dp_…, po_…, acct_…', autocomplete: 'off' })),
    h('button', { type: 'submit' }, 'Open'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const d = new FormData(form);
    location.hash = objectHref(d.get('kind'), String(d.get('id')).trim());
  });
  replace(main, h('h2', {}, 'Objects'), form,
    h('p', { class: 'hint' }, 'Or follow an object link from the event log.'));
}

/** An object: current state, timeline with the state after each event, effects. */
export async function object(main, [kind, id]) {
  replace(main, h('p', {}, 'Loading…'));
  let data;
  try { data = await get(`/api/console/objects/${seg(kind)}/${seg(id)}`); } catch (err) { replace(main, back(), failure(err)); return; }
  const o = data.object;
  const body = h('div', { id: 'timeline' });
  const order = h('fieldset', { class: 'order' },
    h('legend', {}, 'Order events by'),
    radio('order', 'arrival', 'arrival', true), radio('order', 'created', 'created', false));
  const draw = (by) => replace(body, timelineTable(data.timeline, by));
  order.addEventListener('change', (e) => draw(e.target.value));
  draw('arrival');
  replace(main,
    back(),
    h('h2', {}, `${o.kind} `, h('span', { class: 'mono' }, o.id)),
    facts([
      ['Version', String(o.version)],
      ['Last event', link(eventHref('stripe', o.last_event.id), `${o.last_event.type} ${o.last_event.id}`)],
      ['Updated', time(o.updated_at_millis)],
      ['Replay', data.replay_matches === null ? 'partial (some bodies are no longer held)' : (data.replay_matches ? 'replaying the events rebuilds the stored state' : 'the replay differs from the stored state')],
    ]),
    code('Current state', JSON.stringify(o.state, null, 2), true),
    h('section', { 'aria-labelledby': 'ob-tl' },
      h('h3', { id: 'ob-tl' }, 'Timeline'),
      order, body),
    h('section', { 'aria-labelledby': 'ob-fx' },
      h('h3', { id: 'ob-fx' }, 'Effects'),
      effectsTable(data.effects, true)));
}

function radio(name, value, label, checked) {
  const id = `${name}-${value}`;
  return h('span', { class: 'radio' }, h('input', { type: 'radio', id, name, value, checked }), h('label', { for: id }, label));
}

function timelineTable(steps, by) {
  const sorted = [...steps].sort(by === 'created'
    ? (a, b) => (a.created ?? 0) - (b.created ?? 0) || a.applied - b.applied
    : (a, b) => (a.received_at_millis ?? a.applied_at_millis) - (b.received_at_millis ?? b.applied_at_millis) || a.applied - b.applied);
  return table(`Events by ${by} order`, ['Applied', 'Event', 'Created', 'Received', 'Outcome', 'State after'],
    sorted.map((s) => [
      `#${s.applied}`,
      h('span', {}, link(eventHref(s.provider, s.event_id), s.type), h('br'), h('span', { class: 'mono muted' }, s.event_id)),
      secs(s.created),
      time(s.received_at_millis),
      badge(s.outcome),
      s.state ? code('state', s.state) : h('span', { class: 'muted' }, s.state_unknown || '—'),
    ]), 'No events recorded against it.');
}

// --- failures ---------------------------------------------------------------

/** Dead letters and parked effects, with their redrive and retry buttons. */
export function failures(main) {
  const status = h('p', { id: 'failure-status', role: 'status', class: 'hint' });
  const letters = h('div', { id: 'dead-letters' });
  const parked = h('div', { id: 'parked' });
  const refused = h('div', { id: 'refused' });
  replace(main, h('h2', {}, 'Failures'), status,
    h('section', { 'aria-labelledby': 'fl-dlq' }, h('h3', { id: 'fl-dlq' }, 'Dead letters'), letters),
    h('section', { 'aria-labelledby': 'fl-parked' }, h('h3', { id: 'fl-parked' }, 'Parked effects'), parked),
    h('section', { 'aria-labelledby': 'fl-refused' }, h('h3', { id: 'fl-refused' }, 'Refused deliveries (this run)'), refused));
  const act = async (button, path, done) => {
    button.disabled = true;
    try { status.textContent = done(await post(path)); } catch (err) { status.textContent = `Failed: ${err.message}`; }
    last = '';
    await refresh();
  };
  let last = '';
  const refresh = async () => {
    try {
      const [dlq, fx, overview] = await Promise.all([get('/api/dlq?limit=200'), get('/api/effects?status=parked&limit=200'), get('/api/console/overview')]);
      const text = JSON.stringify([dlq, fx, overview.refusals]);
      if (text === last) return;
      last = text;
      replace(letters, table('Dead letters', ['Event', 'Type', 'Queue', 'Receives', 'Redrives', 'Dead since', 'Last error', ''],
        dlq.dead_letters.map((d) => [
          link(eventHref(d.provider, d.event_id), d.event_id, 'mono'), d.type ?? d.event_type, d.dead_letter_queue,
          String(d.receive_count), String(d.redrives), time(d.dead_at_millis), d.last_error || '—',
          h('button', { type: 'button', 'aria-label': `Redrive ${d.dead_letter_queue} (${d.event_id})`, onclick: (e) => act(e.currentTarget, `/api/dlq/redrive?queue=${seg(d.queue)}`, (r) => `Redrove ${r.redriven} message(s) from ${r.queue}-dlq.`) }, 'Redrive'),
        ]), 'No dead letters.'));
      const byObject = new Map();
      for (const f of fx.effects) byObject.set(`${f.object.kind}/${f.object.id}`, f);
      replace(parked, table('Parked effects', ['Object', 'Seq', 'Event', 'Attempts', 'Last error', ''],
        fx.effects.map((f) => [
          link(objectHref(f.object.kind, f.object.id), `${f.object.kind} ${f.object.id}`), `#${f.seq}`, f.event_type,
          String(f.attempts), f.last_error || '—',
          byObject.get(`${f.object.kind}/${f.object.id}`) === f
            ? h('button', { type: 'button', 'aria-label': `Retry ${f.object.kind} ${f.object.id}`, onclick: (e) => act(e.currentTarget, `/api/effects/retry?kind=${seg(f.object.kind)}&id=${seg(f.object.id)}`, (r) => `Released ${r.retried} outbox(es).`) }, 'Retry')
            : '',
        ]), 'No parked effects.'));
      replace(refused, table('Refused deliveries', ['When', 'Provider', 'Status', 'Error', 'Message'],
        overview.refusals.map((d) => [time(d.at_millis), d.provider, String(d.status), d.outcome, d.message || '—']), 'None this run.'));
    } catch (err) { replace(letters, failure(err)); }
  };
  return refresh;
}
