// Building DOM without HTML strings: text always goes in as text.

/** An element with attributes (`on…` functions become listeners) and children. */
export function h(tag, attrs = {}, ...children) {
  const svg = ['svg', 'rect', 'g', 'title'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.setAttribute('class', value);
    else el.setAttribute(key, value === true ? '' : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces `el`'s children. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

/** Milliseconds since the epoch as local time, with the date when not today. */
export function time(millis) {
  if (millis === null || millis === undefined) return '—';
  const d = new Date(millis);
  const today = new Date().toDateString() === d.toDateString();
  const clock = d.toLocaleTimeString([], { hour12: false });
  return today ? clock : `${d.toLocaleDateString()} ${clock}`;
}

/** Unix seconds, as `time` shows them. */
export function secs(s) {
  return s === null || s === undefined ? '—' : time(s * 1000);
}

/** A stage or status as a coloured badge. */
export function badge(text) {
  return h('span', { class: `pill pill-${String(text).replace(/[^a-z_]/gi, '')}` }, String(text).replace(/_/g, ' '));
}

/** A definition list from [term, description] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v ?? '—')]));
}

/** A table with a caption, header cells and rows of cells. */
export function table(caption, headers, rows, empty = 'Nothing yet.') {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'scroll' },
    h('table', {},
      h('caption', { class: 'sr-only' }, caption),
      h('thead', {}, h('tr', {}, headers.map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows.map((cells) => h('tr', {}, cells.map((c, i) => h('td', { 'data-label': headers[i] || null }, c)))))));
}

/** JSON text (or any text) in a collapsible block. */
export function code(summary, text, open = false) {
  return h('details', { open }, h('summary', {}, summary), h('pre', { tabindex: 0 }, h('code', {}, text ?? '')));
}
