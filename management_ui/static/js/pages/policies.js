// Admin > Policies: user policies (and operator policies, for administrators): list, add or
// update, delete.

import { del, get, path, put } from '../api.js';
import { context, defaultVhost, isAdmin, scoped } from '../context.js';
import { attempt, button, fill, h, section, show, showNotice, table } from '../dom.js';
import { form } from '../forms.js';
import { adminFrame } from './admin.js';

const POLICY_HINTS = [
  ['message-ttl', 'Number'], ['expires', 'Number'], ['max-length', 'Number'], ['max-length-bytes', 'Number'],
  ['overflow', 'String'], ['dead-letter-exchange', 'String'], ['dead-letter-routing-key', 'String'],
  ['queue-mode', 'String'], ['alternate-exchange', 'String'],
];
const OPERATOR_HINTS = [['message-ttl', 'Number'], ['expires', 'Number'], ['max-length', 'Number'], ['max-length-bytes', 'Number']];

function policies(kind, title, hints) {
  const list = h('div');
  const refresh = async () => {
    const items = await get(scoped(`/${kind}`));
    fill(list, table([
      { title: 'Virtual Host', value: (p) => p.vhost },
      { title: 'Name', value: (p) => p.name },
      { title: 'Pattern', value: (p) => p.pattern },
      { title: 'Apply to', value: (p) => p['apply-to'] },
      { title: 'Definition', value: (p) => Object.entries(p.definition).map(([k, v]) => h('div', {}, `${k}: ${show(v)}`)) },
      { title: 'Priority', value: (p) => p.priority, num: true },
      { title: '', value: (p) => button('Delete', () => attempt(async () => {
        if (!window.confirm(`Delete policy ${p.name}?`)) return;
        await del(path`/${kind}/${p.vhost}/${p.name}`);
        showNotice(`Policy ${p.name} deleted.`);
        await refresh();
      }), { class: 'danger', 'aria-label': `Delete policy ${p.name}` }) },
    ], items, { label: title, empty: 'No policies.' }));
  };
  const add = form({
    label: `Add / update a ${kind === 'policies' ? 'policy' : 'operator policy'}`,
    fields: [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: context.vhosts, value: defaultVhost() },
      { name: 'name', label: 'Name', required: true },
      { name: 'pattern', label: 'Pattern', required: true, placeholder: '^amq\\.' },
      { name: 'apply_to', label: 'Apply to', type: 'select', options: [['all', 'Exchanges and queues'], ['exchanges', 'Exchanges'], ['queues', 'Queues']] },
      { name: 'priority', label: 'Priority', type: 'number', value: '0' },
      { name: 'definition', label: 'Definition', type: 'args', hints },
    ],
    submit: kind === 'policies' ? 'Add / update policy' : 'Add / update operator policy',
    onSubmit: async (v) => {
      await put(path`/${kind}/${v.vhost}/${v.name}`, {
        pattern: v.pattern, definition: v.definition, priority: v.priority ?? 0, 'apply-to': v.apply_to,
      });
      showNotice(`Policy ${v.name} set.`);
      await refresh();
    },
  });
  return { list, add, refresh };
}

export function policiesPage(view) {
  const content = adminFrame(view, '#/policies', 'Policies');
  const user = policies('policies', 'User policies', POLICY_HINTS);
  content.append(section('User policies', user.list), section('Add / update a policy', user.add, { open: false }));
  if (!isAdmin()) return user.refresh;
  const operator = policies('operator-policies', 'Operator policies', OPERATOR_HINTS);
  content.append(section('Operator policies', operator.list), section('Add / update an operator policy', operator.add, { open: false }));
  return async () => {
    await Promise.all([user.refresh(), operator.refresh()]);
  };
}
