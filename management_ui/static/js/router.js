// Hash routes, as RabbitMQ's: '#/queues/%2F/name' has one encoded segment per parameter.
// A page is a function (view, params) that builds its view once and returns `refresh`, an
// async function that reloads what changes; the app calls it at once and on the interval.

const routes = [];
let current = null;

/** route('#/queues/:vhost/:name', page, 'queues'): `tab` is the highlighted tab. */
export function route(pattern, page, tab) {
  const keys = [];
  const source = pattern.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:(\w+)/g, (_m, key) => {
    keys.push(key);
    return '([^/]+)';
  });
  routes.push({ regex: new RegExp(`^${source}/?$`), keys, page, tab });
}

function match(hash) {
  const plain = hash.split('?')[0] || '#/';
  for (const r of routes) {
    const m = plain.match(r.regex);
    if (m) return { route: r, params: Object.fromEntries(r.keys.map((k, i) => [k, decodeURIComponent(m[i + 1])])) };
  }
  return null;
}

/** Show the page of the current hash in `view`; `onTab` is told which tab it belongs to. */
export async function show(view, onTab) {
  const found = match(location.hash) ?? match('#/');
  view.replaceChildren();
  onTab(found.route.tab);
  const refresh = found.route.page(view, found.params);
  current = { refresh, hash: location.hash };
  await refreshCurrent();
}

/** Reload the current page's changing parts, one reload at a time; its error is thrown. */
export function refreshCurrent() {
  const page = current;
  if (!page?.refresh) return Promise.resolve();
  if (!page.running) {
    page.running = page.refresh().finally(() => {
      page.running = null;
    });
  }
  return page.running;
}

export function go(hash) {
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent('hashchange'));
  else location.hash = hash;
}
