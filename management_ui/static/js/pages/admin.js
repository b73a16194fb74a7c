// The Admin tab's sub-navigation (Users, Virtual Hosts, Policies, Limits), as RabbitMQ's.

import { isAdmin } from '../context.js';
import { h } from '../dom.js';

const PAGES = [
  ['#/users', 'Users', true], ['#/vhosts', 'Virtual Hosts', true], ['#/policies', 'Policies', false], ['#/limits', 'Limits', true],
];

/** The admin page frame: sub-navigation on the right, `title` and the page's content. */
export function adminFrame(view, current, title) {
  const content = h('div', { class: 'admin-content' }, h('h1', {}, title));
  const nav = h('nav', { class: 'admin-nav', 'aria-label': 'Admin' }, h('ul', {},
    PAGES.filter(([, , adminOnly]) => isAdmin() || !adminOnly).map(([href, text]) =>
      h('li', {}, h('a', { href, class: href === current ? 'selected' : null, 'aria-current': href === current ? 'page' : null }, text)))));
  view.append(h('div', { class: 'admin' }, content, nav));
  return content;
}

/** RabbitMQ's "Clear" buttons and permission columns share these. */
export const PERMISSION_FIELDS = [
  { name: 'configure', label: 'Configure regexp', value: '.*' },
  { name: 'write', label: 'Write regexp', value: '.*' },
  { name: 'read', label: 'Read regexp', value: '.*' },
];
