// Channels: the list, and one channel with its consumers and message rates.

import { get, path, query } from '../api.js';
import { LAST_MINUTE, ratesChart } from '../charts.js';
import { scoped } from '../context.js';
import { facts, fill, h, link, num, rate, section, show, table } from '../dom.js';
import { pagedList } from '../paging.js';

const channelLink = (c) => link(`#/channels/${encodeURIComponent(c.name)}`, c.name);

function mode(c) {
  return [c.confirm ? h('abbr', { class: 'tag', title: 'Confirm' }, 'C') : null,
    c.transactional ? h('abbr', { class: 'tag', title: 'Transactional' }, 'T') : null];
}

/** Channels as a table (also on a connection's page). */
export function channelsTable(items) {
  return table([
    { title: 'Channel', value: channelLink, sort: 'name' },
    { title: 'Virtual host', value: (c) => c.vhost, sort: 'vhost' },
    { title: 'User name', value: (c) => c.user, sort: 'user' },
    { title: 'Mode', value: mode },
    { title: 'State', value: (c) => c.state },
    { title: 'Unconfirmed', value: (c) => num(c.messages_unconfirmed), num: true, sort: 'messages_unconfirmed' },
    { title: 'Prefetch', value: (c) => num(c.prefetch_count), num: true, sort: 'prefetch_count' },
    { title: 'Unacked', value: (c) => num(c.messages_unacknowledged), num: true, sort: 'messages_unacknowledged' },
    { title: 'publish', value: (c) => rate(c.message_stats?.publish_details), num: true },
    { title: 'confirm', value: (c) => rate(c.message_stats?.confirm_details), num: true },
    { title: 'deliver / get', value: (c) => rate(c.message_stats?.deliver_get_details), num: true },
    { title: 'ack', value: (c) => rate(c.message_stats?.ack_details), num: true },
  ], items, { label: 'Channels', empty: 'No channels.' });
}

export function channelsPage(view) {
  const list = pagedList('channels', () => scoped('/channels'), channelsTable, { noun: 'channels' });
  view.append(h('h1', {}, 'Channels'), section('All channels', list.el));
  return list.refresh;
}

export function channelPage(view, { name }) {
  const details = h('div');
  const rates = h('div');
  const consumers = h('div');
  view.append(h('h1', {}, 'Channel ', h('b', {}, name)),
    section('Overview', details), section('Message rates', rates), section('Consumers', consumers));

  return async () => {
    const c = await get(path`/channels/${name}` + query(LAST_MINUTE));
    const conn = c.connection_details?.name;
    fill(details, facts([
      ['Connection', conn ? link(`#/connections/${encodeURIComponent(conn)}`, conn) : undefined],
      ['Virtual host', c.vhost], ['Username', c.user], ['Mode', mode(c)], ['State', c.state],
      ['Prefetch count', num(c.prefetch_count)], ['Global prefetch count', num(c.global_prefetch_count)],
      ['Messages unacknowledged', num(c.messages_unacknowledged)], ['Messages unconfirmed', num(c.messages_unconfirmed)],
      ['Messages uncommitted', num(c.messages_uncommitted)], ['Acks uncommitted', num(c.acks_uncommitted)],
    ]));
    fill(rates, ratesChart(c.message_stats));
    fill(consumers, table([
      { title: 'Consumer tag', value: (x) => x.consumer_tag },
      { title: 'Queue', value: (x) => link(`#/queues/${encodeURIComponent(x.queue.vhost)}/${encodeURIComponent(x.queue.name)}`, x.queue.name) },
      { title: 'Ack required', value: (x) => (x.ack_required ? '●' : '○') },
      { title: 'Exclusive', value: (x) => (x.exclusive ? '●' : '○') },
      { title: 'Prefetch count', value: (x) => num(x.prefetch_count), num: true },
      { title: 'Arguments', value: (x) => show(x.arguments) },
    ], c.consumer_details ?? [], { label: 'Consumers', empty: 'No consumers.' }));
  };
}
