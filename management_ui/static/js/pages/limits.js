// Admin > Limits: virtual host limits (max-connections, max-queues) and user limits
// (max-connections, max-channels): set and clear.

import { del, get, path, put } from '../api.js';
import { context, defaultVhost } from '../context.js';
import { attempt, button, fill, h, section, showNotice, table } from '../dom.js';
import { form } from '../forms.js';
import { adminFrame } from './admin.js';

function limits({ base, key, keyLabel, names, keyField }) {
  const list = h('div');
  const refresh = async () => {
    const items = await get(`/${base}`);
    const rows = items.flatMap((item) => Object.entries(item.value).map(([name, value]) => ({ owner: item[key], name, value })));
    fill(list, table([
      { title: keyLabel, value: (r) => r.owner },
      { title: 'Limit', value: (r) => r.name },
      { title: 'Value', value: (r) => r.value, num: true },
      { title: '', value: (r) => button('Clear', () => attempt(async () => {
        await del(path`/${base}/${r.owner}/${r.name}`);
        showNotice(`Limit ${r.name} of ${r.owner} cleared.`);
        await refresh();
      }), { 'aria-label': `Clear ${r.name} of ${r.owner}` }) },
    ], rows, { label: `${keyLabel} limits`, empty: 'No limits.' }));
  };
  const add = form({
    label: `Set / update a ${keyLabel.toLowerCase()} limit`,
    fields: [keyField, { name: 'limit', label: 'Limit', type: 'select', options: names }, { name: 'value', label: 'Value', type: 'number', required: true }],
    submit: 'Set / update limit',
    onSubmit: async (v) => {
      await put(path`/${base}/${v.owner}/${v.limit}`, { value: v.value });
      showNotice(`Limit ${v.limit} of ${v.owner} set.`);
      await refresh();
    },
  });
  return { el: h('div', {}, list, h('h3', {}, `Set / update a ${keyLabel.toLowerCase()} limit`), add), refresh };
}

export function limitsPage(view) {
  const content = adminFrame(view, '#/limits', 'Limits');
  const vhostLimits = limits({
    base: 'vhost-limits', key: 'vhost', keyLabel: 'Virtual host', names: ['max-connections', 'max-queues'],
    keyField: { name: 'owner', label: 'Virtual host', type: 'select', options: context.vhosts, value: defaultVhost() },
  });
  const userLimits = limits({
    base: 'user-limits', key: 'user', keyLabel: 'User', names: ['max-connections', 'max-channels'],
    keyField: { name: 'owner', label: 'User', required: true },
  });
  content.append(section('Virtual host limits', vhostLimits.el), section('User limits', userLimits.el));
  return async () => {
    await Promise.all([vhostLimits.refresh(), userLimits.refresh()]);
  };
}
