// Admin > Virtual Hosts: the paged list with the add form; one vhost: permissions, delete.

import { del, get, path, put } from '../api.js';
import { context, vhostsChanged } from '../context.js';
import { facts, fill, h, link, num, rate, section, showNotice, table } from '../dom.js';
import { confirmButton, form } from '../forms.js';
import { pagedList } from '../paging.js';
import { adminFrame, PERMISSION_FIELDS } from './admin.js';
import { permissionsTable } from './users.js';

export function vhostsPage(view) {
  const content = adminFrame(view, '#/vhosts', 'Virtual Hosts');
  const list = pagedList('vhosts', () => '/vhosts', (items) => table([
    { title: 'Name', value: (v) => link(`#/vhosts/${encodeURIComponent(v.name)}`, v.name), sort: 'name' },
    { title: 'Description', value: (v) => v.description ?? '' },
    { title: 'Tags', value: (v) => (v.tags ?? []).join(', ') },
    { title: 'Ready', value: (v) => num(v.messages_ready), num: true, sort: 'messages_ready' },
    { title: 'Unacked', value: (v) => num(v.messages_unacknowledged), num: true, sort: 'messages_unacknowledged' },
    { title: 'Total', value: (v) => num(v.messages), num: true, sort: 'messages' },
    { title: 'publish', value: (v) => rate(v.message_stats?.publish_details), num: true },
    { title: 'deliver / get', value: (v) => rate(v.message_stats?.deliver_get_details), num: true },
  ], items, { label: 'Virtual hosts', empty: 'No virtual hosts.' }), { noun: 'virtual hosts' });
  const add = form({
    label: 'Add a new virtual host',
    fields: [
      { name: 'name', label: 'Name', required: true },
      { name: 'description', label: 'Description' },
      { name: 'tags', label: 'Tags', help: 'Comma-separated' },
    ],
    submit: 'Add virtual host',
    onSubmit: async (v) => {
      await put(path`/vhosts/${v.name}`, { description: v.description, tags: v.tags });
      showNotice(`Virtual host ${v.name} added.`);
      await vhostsChanged();
      await list.refresh();
    },
  });
  content.append(section('All virtual hosts', list.el), section('Add a new virtual host', add, { open: false }));
  return list.refresh;
}

export function vhostPage(view, { name }) {
  const content = adminFrame(view, '#/vhosts', `Virtual Host: ${name}`);
  const details = h('div');
  const permissions = h('div');
  const userSelect = { name: 'user', label: 'User', type: 'select', options: [] };
  const grant = form({
    label: 'Set permission',
    fields: [userSelect, ...PERMISSION_FIELDS],
    submit: 'Set permission',
    onSubmit: async (v) => {
      await put(path`/permissions/${name}/${v.user}`, { configure: v.configure, write: v.write, read: v.read });
      showNotice(`Permission of ${v.user} on ${name} set.`);
      await refresh();
    },
  });
  content.append(
    section('Overview', details),
    section('Permissions', [permissions, h('h3', {}, 'Set permission'), grant]),
    section('Delete this vhost', confirmButton('Delete this virtual host', `Delete virtual host ${name}?`, async () => {
      await del(path`/vhosts/${name}`);
      showNotice(`Virtual host ${name} deleted.`);
      await vhostsChanged();
      location.hash = '#/vhosts';
    }), { open: false }));
  let users = null;

  const refresh = async () => {
    const [vhost, perms] = await Promise.all([get(path`/vhosts/${name}`), get(path`/vhosts/${name}/permissions`)]);
    if (!users) {
      users = (await get('/users')).map((u) => u.name);
      fill(grant.controls.user.el, users.map((u) => h('option', { value: u, selected: u === context.user.name }, u)));
    }
    fill(details, facts([
      ['Description', vhost.description || undefined], ['Tags', (vhost.tags ?? []).join(', ') || undefined],
      ['Messages', num(vhost.messages)], ['Ready', num(vhost.messages_ready)], ['Unacked', num(vhost.messages_unacknowledged)],
    ]));
    fill(permissions, permissionsTable(perms, 'user', refresh));
  };
  return refresh;
}
