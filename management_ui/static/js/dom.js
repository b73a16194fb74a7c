// DOM helpers: elements built from data (text is never parsed as HTML), tables, sections,
// formatting, and the message area for errors and notices.

/** An element: h('a', {href: '#/'}, 'text', child, [more]). `on*` attributes add listeners. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key === 'class') el.className = value;
    else if (key === 'value' || key === 'checked') el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replace the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A collapsible section, as RabbitMQ's: a heading that opens and closes it. */
export function section(title, content, { open = true, id } = {}) {
  return h('details', { class: 'section', open, id }, h('summary', {}, h('h2', {}, title)), content);
}

/**
 * A table. columns: [{title, value: row => text|Node, num: true, sort: 'api.key'}], optionally
 * groups: [{title, span}] for a header row above (RabbitMQ's "Overview | Messages | ...").
 * A column's `sort` is the API's sort key for it; a paged list makes those headers sort.
 */
export function table(columns, rows, { groups, empty = 'Nothing to show', label } = {}) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  const head = h('thead', {},
    groups && h('tr', { class: 'groups' }, groups.map((g) => h('th', { colspan: g.span }, g.title))),
    h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : null, 'data-sort': c.sort }, c.title))));
  const body = h('tbody', {}, rows.map((row) =>
    h('tr', {}, columns.map((c) => h('td', { class: c.num ? 'num' : null }, c.value(row))))));
  return h('table', { class: 'list', 'aria-label': label }, head, body);
}

/** A two-column table of name/value pairs, skipping undefined values. */
export function facts(pairs) {
  const rows = pairs.filter(([, v]) => v !== undefined && v !== null);
  return h('table', { class: 'facts' },
    h('tbody', {}, rows.map(([k, v]) => h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, v)))));
}

export function button(text, onclick, attrs = {}) {
  return h('button', { type: 'button', onclick, ...attrs }, text);
}

export function link(href, text) {
  return h('a', { href }, text);
}

/** Small labels for an object's features (D, AD, Excl, Args, ...), titled with their meaning. */
export function features(obj) {
  const tags = [];
  if (obj.durable) tags.push(['D', 'durable']);
  if (obj.auto_delete) tags.push(['AD', 'auto-delete']);
  if (obj.exclusive) tags.push(['Excl', 'exclusive']);
  if (obj.internal) tags.push(['I', 'internal']);
  for (const key of Object.keys(obj.arguments ?? {})) {
    const tag = argAbbrev(key);
    if (tag) tags.push([tag, `${key}: ${JSON.stringify(obj.arguments[key])}`]);
  }
  const policy = obj.policy ? h('a', { class: 'policy', href: '#/policies', title: 'policy' }, obj.policy) : null;
  return h('span', { class: 'features' }, tags.map(([t, title]) => h('abbr', { class: 'tag', title }, t)), policy);
}

const ABBREV = {
  'x-message-ttl': 'TTL', 'x-expires': 'Exp', 'x-max-length': 'Lim', 'x-max-length-bytes': 'Lim B',
  'x-dead-letter-exchange': 'DLX', 'x-dead-letter-routing-key': 'DLK', 'x-max-priority': 'Pri',
  'x-queue-mode': 'Lazy', 'x-single-active-consumer': 'SAC', 'x-overflow': 'Ovfl',
  'alternate-exchange': 'AE', 'x-queue-type': null,
};

/** A feature's label; null for x-queue-type, which the Type column shows. */
function argAbbrev(key) {
  return ABBREV[key] === undefined ? 'Args' : ABBREV[key];
}

// Formatting, as RabbitMQ's UI shows figures.

export function num(n) {
  return n === undefined || n === null ? '' : Number(n).toLocaleString('en-US');
}

export function rate(details) {
  return details && details.rate !== undefined ? `${details.rate.toFixed(2)}/s` : '';
}

export function bytes(n) {
  if (n === undefined || n === null) return '';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return i === 0 ? `${v} B` : `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

export function duration(ms) {
  if (ms === undefined) return '';
  let s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86400);
  s %= 86400;
  const hh = Math.floor(s / 3600);
  const mm = Math.floor((s % 3600) / 60);
  const ss = s % 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${mm}m`;
  return `${mm}m ${ss}s`;
}

export function time(ms) {
  return ms ? new Date(ms).toLocaleString('sv-SE').replace('T', ' ') : '';
}

export function exchangeName(name) {
  return name === '' ? '(AMQP default)' : name;
}

/** A JSON-ish value as text (tables, arguments, client properties). */
export function show(value) {
  if (value === undefined || value === null) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

// The message area: errors stay until closed, notices go away by themselves.

export function showError(error) {
  const text = error?.reason !== undefined ? `${error.status}: ${error.reason}` : String(error?.message ?? error);
  const area = document.getElementById('messages');
  // A refresh failing every few seconds shows its error once.
  if ([...area.querySelectorAll('.error > span')].some((s) => s.textContent === text)) return;
  const box = h('div', { class: 'message error', role: 'alert' }, h('span', {}, text),
    button('Close', () => box.remove(), { class: 'close' }));
  area.append(box);
}

export function showNotice(text) {
  const area = document.getElementById('messages');
  for (const old of area.querySelectorAll('.notice')) old.remove(); // the latest one is enough
  const box = h('div', { class: 'message notice', role: 'status' }, text);
  area.append(box);
  setTimeout(() => box.remove(), 4000);
}

/** Run `action` (async), showing its error if it fails; true when it succeeded. */
export async function attempt(action) {
  try {
    await action();
    return true;
  } catch (error) {
    showError(error);
    return false;
  }
}
