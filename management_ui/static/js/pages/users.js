// Admin > Users: the list with the add-user form; one user: tags, password, permissions, delete.

import { del, get, path, put } from '../api.js';
import { context, defaultVhost } from '../context.js';
import { attempt, button, facts, fill, h, link, section, showNotice, table } from '../dom.js';
import { confirmButton, form } from '../forms.js';
import { adminFrame, PERMISSION_FIELDS } from './admin.js';

const TAGS = ['administrator', 'monitoring', 'policymaker', 'management', 'impersonator'];

/** A tags text field with RabbitMQ's quick-add buttons ("Set: Admin | Monitoring | ..."). */
function withTagButtons(formEl) {
  const input = formEl.controls.tags.el;
  const set = (tag) => {
    const tags = input.value.split(',').map((t) => t.trim()).filter((t) => t);
    if (tag === '') input.value = '';
    else if (!tags.includes(tag)) input.value = [...tags, tag].join(', ');
  };
  input.after(h('div', { class: 'hints' }, 'Set: ',
    [...TAGS, ''].map((t) => h('button', { type: 'button', class: 'hint', onclick: () => set(t) }, t || 'None'))));
  return formEl;
}

export function usersPage(view) {
  const content = adminFrame(view, '#/users', 'Users');
  const filter = h('input', { type: 'search', oninput: () => refresh() });
  const list = h('div');
  const add = withTagButtons(form({
    label: 'Add a user',
    fields: [
      { name: 'username', label: 'Username', required: true },
      { name: 'password', label: 'Password', type: 'password' },
      { name: 'confirm', label: 'Password (confirm)', type: 'password' },
      { name: 'tags', label: 'Tags', help: 'Comma-separated' },
    ],
    submit: 'Add user',
    onSubmit: async (v) => {
      if (v.password !== v.confirm) throw new Error('Passwords do not match');
      const body = { tags: v.tags };
      if (v.password) body.password = v.password;
      else body.password_hash = '';
      await put(path`/users/${v.username}`, body);
      showNotice(`User ${v.username} added.`);
      await refresh();
    },
  }));
  content.append(section('All users', [h('label', { class: 'filter' }, 'Filter: ', filter), list]), section('Add a user', add, { open: false }));

  const refresh = async () => {
    const [users, permissions] = await Promise.all([get('/users'), get('/permissions')]);
    const needle = filter.value.toLowerCase();
    const shown = users.filter((u) => u.name.toLowerCase().includes(needle));
    fill(list, table([
      { title: 'Name', value: (u) => link(`#/users/${encodeURIComponent(u.name)}`, u.name) },
      { title: 'Tags', value: (u) => (Array.isArray(u.tags) ? u.tags : [u.tags]).filter((t) => t).join(', ') },
      { title: 'Can access virtual hosts', value: (u) => permissions.filter((p) => p.user === u.name).map((p) => p.vhost).join(', ') || 'No access' },
      { title: 'Has password', value: (u) => (u.password_hash ? '●' : '○') },
    ], shown, { label: 'Users', empty: 'No users.' }));
  };
  return refresh;
}

export function userPage(view, { name }) {
  const content = adminFrame(view, '#/users', `User: ${name}`);
  const details = h('div');
  const permissions = h('div');
  let current = null;
  const update = withTagButtons(form({
    label: 'Update this user',
    keep: true,
    fields: [
      { name: 'tags', label: 'Tags', help: 'Comma-separated' },
      { name: 'password', label: 'Password', type: 'password', help: 'Leave empty to keep the current one' },
    ],
    submit: 'Update user',
    onSubmit: async (v) => {
      const body = { tags: v.tags };
      // A PUT without a password clears it: keep the current hash unless a new one is given.
      if (v.password) body.password = v.password;
      else Object.assign(body, { password_hash: current.password_hash, hashing_algorithm: current.hashing_algorithm });
      await put(path`/users/${name}`, body);
      showNotice(`User ${name} updated.`);
      await refresh();
    },
  }));
  const grant = form({
    label: 'Set permission',
    fields: [{ name: 'vhost', label: 'Virtual host', type: 'select', options: context.vhosts, value: defaultVhost() }, ...PERMISSION_FIELDS],
    submit: 'Set permission',
    onSubmit: async (v) => {
      await put(path`/permissions/${v.vhost}/${name}`, { configure: v.configure, write: v.write, read: v.read });
      showNotice(`Permission of ${name} on ${v.vhost} set.`);
      await refresh();
    },
  });
  content.append(
    section('Overview', details),
    section('Permissions', [permissions, h('h3', {}, 'Set permission'), grant]),
    section('Update this user', update, { open: false }),
    section('Delete this user', confirmButton('Delete this user', `Delete user ${name}?`, async () => {
      await del(path`/users/${name}`);
      showNotice(`User ${name} deleted.`);
      location.hash = '#/users';
    }), { open: false }));
  let first = true;

  const refresh = async () => {
    const [user, perms] = await Promise.all([get(path`/users/${name}`), get(path`/users/${name}/permissions`)]);
    current = user;
    const tags = (Array.isArray(user.tags) ? user.tags : [user.tags]).filter((t) => t).join(', ');
    if (first) update.controls.tags.el.value = tags;
    first = false;
    fill(details, facts([['Tags', tags || '(none)'], ['Has password', user.password_hash ? 'yes' : 'no']]));
    fill(permissions, permissionsTable(perms, 'vhost', refresh));
  };
  return refresh;
}

/** Permissions with "Clear" buttons; `by` is the column that differs (vhost or user). */
export function permissionsTable(perms, by, refresh) {
  return table([
    { title: by === 'vhost' ? 'Virtual host' : 'User', value: (p) => p[by] },
    { title: 'Configure regexp', value: (p) => p.configure },
    { title: 'Write regexp', value: (p) => p.write },
    { title: 'Read regexp', value: (p) => p.read },
    { title: '', value: (p) => button('Clear', () => attempt(async () => {
      await del(path`/permissions/${p.vhost}/${p.user}`);
      showNotice(`Permission of ${p.user} on ${p.vhost} cleared.`);
      await refresh();
    })) },
  ], perms, { label: 'Permissions', empty: 'No permissions.' });
}
