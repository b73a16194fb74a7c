// What every page may need: the logged-in user, the broker's overview (product, exchange
// types), the vhosts, and the vhost chosen at the top right ('' for all).

import { get, path } from './api.js';

export const context = { user: null, overview: null, vhosts: [], vhost: sessionStorage.getItem('management.vhost') ?? '' };

export function hasTag(...tags) {
  return tags.some((t) => context.user?.tags?.includes(t));
}

export const isAdmin = () => hasTag('administrator');
export const canMonitor = () => hasTag('administrator', 'monitoring');

export async function loadVhosts() {
  context.vhosts = (await get('/vhosts?columns=name')).map((v) => v.name);
  return context.vhosts;
}

/** After a vhost was added or deleted: reload the list and tell the header. */
export async function vhostsChanged() {
  await loadVhosts();
  window.dispatchEvent(new Event('vhosts-changed'));
}

export function chooseVhost(name) {
  context.vhost = name;
  sessionStorage.setItem('management.vhost', name);
}

/** A list's API path scoped to the chosen vhost: '/queues' or '/queues/%2F'. */
export function scoped(base) {
  return context.vhost ? base + path`/${context.vhost}` : base;
}

/** The vhost a form preselects: the chosen one, else "/" when there, else the first. */
export function defaultVhost() {
  return context.vhost || (context.vhosts.includes('/') ? '/' : context.vhosts[0]);
}
