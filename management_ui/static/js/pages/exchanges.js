// Exchanges: the list with the add-exchange form, and one exchange with its bindings, publish
// form and delete button.

import { del, get, path, put } from '../api.js';
import { exchangeBindings, exchangeLink } from '../bindings.js';
import { context, defaultVhost, scoped } from '../context.js';
import { exchangeName, facts, features, fill, h, section, showNotice, table } from '../dom.js';
import { confirmButton, form } from '../forms.js';
import { publishForm } from '../messages.js';
import { pagedList } from '../paging.js';

// No message rates: the broker does not count an exchange's messages (docs/management.md).
export function exchangesPage(view) {
  const list = pagedList('exchanges', () => scoped('/exchanges'), (items) => table([
    { title: 'Virtual host', value: (x) => x.vhost, sort: 'vhost' },
    { title: 'Name', value: (x) => exchangeLink(x.vhost, x.name), sort: 'name' },
    { title: 'Type', value: (x) => x.type, sort: 'type' },
    { title: 'Features', value: features },
  ], items, { label: 'Exchanges', empty: 'No exchanges.' }), { noun: 'exchanges' });
  const types = (context.overview?.exchange_types ?? [{ name: 'direct' }]).map((t) => t.name);
  const add = form({
    label: 'Add a new exchange',
    fields: [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: context.vhosts, value: defaultVhost() },
      { name: 'name', label: 'Name', required: true },
      { name: 'type', label: 'Type', type: 'select', options: types },
      { name: 'durable', label: 'Durability', type: 'select', options: [['true', 'Durable'], ['false', 'Transient']] },
      { name: 'auto_delete', label: 'Auto delete', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
      { name: 'internal', label: 'Internal', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
      { name: 'arguments', label: 'Arguments', type: 'args', hints: [['alternate-exchange', 'String']] },
    ],
    submit: 'Add exchange',
    onSubmit: async (v) => {
      await put(path`/exchanges/${v.vhost}/${v.name}`, {
        type: v.type, durable: v.durable === 'true', auto_delete: v.auto_delete === 'true',
        internal: v.internal === 'true', arguments: v.arguments,
      });
      showNotice(`Exchange ${v.name} added.`);
      await list.refresh();
    },
  });
  view.append(h('h1', {}, 'Exchanges'), section('All exchanges', list.el), section('Add a new exchange', add, { open: false }));
  return list.refresh;
}

export function exchangePage(view, { vhost, name }) {
  const details = h('div');
  const bindings = exchangeBindings(vhost, name);
  const shown = name === 'amq.default' ? '' : name;
  view.append(
    h('h1', {}, 'Exchange: ', h('b', {}, exchangeName(shown)), h('span', { class: 'small' }, ` in virtual host ${vhost}`)),
    section('Overview', details),
    section('Bindings', bindings.el),
    section('Publish message', publishForm(vhost, name), { open: false }),
    section('Delete this exchange', confirmButton('Delete this exchange', `Delete exchange ${exchangeName(shown)}?`, async () => {
      await del(path`/exchanges/${vhost}/${name}`);
      showNotice(`Exchange ${name} deleted.`);
      location.hash = '#/exchanges';
    }), { open: false }));

  return async () => {
    const [x] = await Promise.all([get(path`/exchanges/${vhost}/${name}`), bindings.refresh()]);
    fill(details, facts([
      ['Type', x.type], ['Features', features(x)], ['Policy', x.policy || undefined],
    ]));
  };
}
