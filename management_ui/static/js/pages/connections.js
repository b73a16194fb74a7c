// Connections: the list, and one connection with its channels and a form to close it.

import { del, get, path } from '../api.js';
import { scoped } from '../context.js';
import { bytes, facts, fill, h, link, num, rate, section, show, table, time } from '../dom.js';
import { form } from '../forms.js';
import { pagedList } from '../paging.js';
import { channelsTable } from './channels.js';

const connectionLink = (c) => [link(`#/connections/${encodeURIComponent(c.name)}`, c.name),
  c.user_provided_name ? h('div', { class: 'small' }, c.user_provided_name) : null];

export function connectionsPage(view) {
  const list = pagedList('connections', () => scoped('/connections'), (items) => table([
    { title: 'Virtual host', value: (c) => c.vhost, sort: 'vhost' },
    { title: 'Name', value: connectionLink, sort: 'name' },
    { title: 'User name', value: (c) => c.user, sort: 'user' },
    { title: 'State', value: (c) => c.state, sort: 'state' },
    { title: 'SSL / TLS', value: (c) => (c.ssl ? '●' : '○') },
    { title: 'Protocol', value: (c) => c.protocol },
    { title: 'Channels', value: (c) => num(c.channels), num: true, sort: 'channels' },
    { title: 'From client', value: (c) => rateBytes(c.recv_oct_details), num: true, sort: 'recv_oct_details.rate' },
    { title: 'To client', value: (c) => rateBytes(c.send_oct_details), num: true, sort: 'send_oct_details.rate' },
  ], items, { label: 'Connections', empty: 'No connections.' }), { noun: 'connections' });
  view.append(h('h1', {}, 'Connections'), section('All connections', list.el));
  return list.refresh;
}

function rateBytes(details) {
  return details ? `${bytes(Math.round(details.rate))}/s` : '';
}

export function connectionPage(view, { name }) {
  const details = h('div');
  const client = h('div');
  const provided = h('p', { class: 'small' });
  const channels = h('div');
  const close = form({
    label: 'Close this connection',
    fields: [{ name: 'reason', label: 'Reason', value: 'Closed via management plugin' }],
    submit: 'Force Close',
    onSubmit: async ({ reason }) => {
      await del(path`/connections/${name}`, { headers: { 'X-Reason': reason } });
      location.hash = '#/connections';
    },
  });
  view.append(
    h('h1', {}, 'Connection ', h('b', {}, name)),
    provided,
    section('Overview', details),
    section('Client properties', client, { open: false }),
    section('Channels', channels),
    section('Close this connection', close, { open: false }));

  return async () => {
    const [c, chans] = await Promise.all([get(path`/connections/${name}`), get(path`/connections/${name}/channels`)]);
    fill(details, facts([
      ['Node', c.node], ['Virtual host', c.vhost], ['Username', c.user], ['Protocol', c.protocol],
      ['Authentication', c.auth_mechanism], ['State', c.state], ['Connected at', time(c.connected_at)],
      ['Client', `${c.peer_host}:${c.peer_port}`], ['Heartbeat', c.timeout !== undefined ? `${c.timeout}s` : undefined],
      ['Frame max', num(c.frame_max)], ['Channel limit', num(c.channel_max)],
      ['Received', `${bytes(c.recv_oct)} (${rate(c.recv_oct_details)})`], ['Sent', `${bytes(c.send_oct)} (${rate(c.send_oct_details)})`],
    ]));
    provided.textContent = c.user_provided_name ?? '';
    fill(client, facts(Object.entries(c.client_properties ?? {}).map(([k, v]) => [k, show(v)])));
    fill(channels, channelsTable(chans));
  };
}
