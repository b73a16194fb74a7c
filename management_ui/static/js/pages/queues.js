// Queues: the paged, filtered list with the add-queue form, and one queue: charts, details,
// consumers, bindings, publish, get, purge and delete.

import { del, get, path, put, query } from '../api.js';
import { queueBindings, queueLink } from '../bindings.js';
import { LAST_MINUTE, lengthsChart, ratesChart } from '../charts.js';
import { context, defaultVhost, scoped } from '../context.js';
import { bytes, facts, features, fill, h, link, num, rate, section, show, showNotice, table } from '../dom.js';
import { confirmButton, form } from '../forms.js';
import { getForm, publishForm } from '../messages.js';
import { pagedList } from '../paging.js';

const ARGUMENT_HINTS = [
  ['x-message-ttl', 'Number'], ['x-expires', 'Number'], ['x-max-length', 'Number'], ['x-max-length-bytes', 'Number'],
  ['x-overflow', 'String'], ['x-dead-letter-exchange', 'String'], ['x-dead-letter-routing-key', 'String'],
  ['x-single-active-consumer', 'Boolean'], ['x-max-priority', 'Number'], ['x-queue-mode', 'String'],
  ['x-queue-type', 'String'],
];
// No queue type chooser: the broker has classic queues, and a plugin's type is asked for by its
// x-queue-type argument (RabbitMQ's chooser offers quorum and stream, which are not built here).

function state(q) {
  return h('span', { class: `state ${q.state ?? ''}` }, q.state ?? '');
}

export function queuesPage(view) {
  const list = pagedList('queues', () => scoped('/queues'), (items) => table([
    { title: 'Virtual host', value: (q) => q.vhost, sort: 'vhost' },
    { title: 'Name', value: (q) => queueLink(q.vhost, q.name), sort: 'name' },
    { title: 'Type', value: (q) => q.type, sort: 'type' },
    { title: 'Features', value: features },
    { title: 'State', value: state, sort: 'state' },
    { title: 'Ready', value: (q) => num(q.messages_ready), num: true, sort: 'messages_ready' },
    { title: 'Unacked', value: (q) => num(q.messages_unacknowledged), num: true, sort: 'messages_unacknowledged' },
    { title: 'Total', value: (q) => num(q.messages), num: true, sort: 'messages' },
    { title: 'incoming', value: (q) => rate(q.message_stats?.publish_details), num: true, sort: 'message_stats.publish_details.rate' },
    { title: 'deliver / get', value: (q) => rate(q.message_stats?.deliver_get_details), num: true, sort: 'message_stats.deliver_get_details.rate' },
    { title: 'ack', value: (q) => rate(q.message_stats?.ack_details), num: true, sort: 'message_stats.ack_details.rate' },
  ], items, {
    label: 'Queues', empty: 'No queues.',
    groups: [{ title: 'Overview', span: 5 }, { title: 'Messages', span: 3 }, { title: 'Message rates', span: 3 }],
  }), { noun: 'queues' });
  const add = form({
    label: 'Add a new queue',
    fields: [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: context.vhosts, value: defaultVhost() },
      { name: 'name', label: 'Name', required: true },
      { name: 'durable', label: 'Durability', type: 'select', options: [['true', 'Durable'], ['false', 'Transient']] },
      { name: 'auto_delete', label: 'Auto delete', type: 'select', options: [['false', 'No'], ['true', 'Yes']] },
      { name: 'arguments', label: 'Arguments', type: 'args', hints: ARGUMENT_HINTS },
    ],
    submit: 'Add queue',
    onSubmit: async (v) => {
      await put(path`/queues/${v.vhost}/${v.name}`, { durable: v.durable === 'true', auto_delete: v.auto_delete === 'true', arguments: v.arguments });
      showNotice(`Queue ${v.name} added.`);
      await list.refresh();
    },
  });
  view.append(h('h1', {}, 'Queues'), section('All queues', list.el), section('Add a new queue', add, { open: false }));
  return list.refresh;
}

export function queuePage(view, { vhost, name }) {
  const lengths = h('div');
  const rates = h('div');
  const details = h('div');
  const consumers = h('div');
  const bindings = queueBindings(vhost, name);
  let refresh;
  view.append(
    h('h1', {}, 'Queue ', h('b', {}, name), h('span', { class: 'small' }, ` in virtual host ${vhost}`)),
    section('Overview', [
      h('h3', {}, 'Queued messages ', h('span', { class: 'small' }, 'last minute')), lengths,
      h('h3', {}, 'Message rates ', h('span', { class: 'small' }, 'last minute')), rates,
      h('h3', {}, 'Details'), details]),
    section('Consumers', consumers),
    section('Bindings', bindings.el),
    section('Publish message', publishForm(vhost, '', name), { open: false }),
    section('Get messages', getForm(vhost, name, () => refresh()), { open: false }),
    section('Delete', confirmButton('Delete Queue', `Delete queue ${name}?`, async () => {
      await del(path`/queues/${vhost}/${name}`);
      showNotice(`Queue ${name} deleted.`);
      location.hash = '#/queues';
    }), { open: false }),
    section('Purge', confirmButton('Purge Messages', `Purge all messages of queue ${name}?`, async () => {
      await del(path`/queues/${vhost}/${name}/contents`);
      showNotice(`Queue ${name} purged.`);
      await refresh();
    }), { open: false }));

  refresh = async () => {
    const [q] = await Promise.all([get(path`/queues/${vhost}/${name}` + query(LAST_MINUTE)), bindings.refresh()]);
    fill(lengths, lengthsChart(q));
    fill(rates, ratesChart(q.message_stats));
    fill(details, facts([
      ['Type', q.type], ['Features', features(q)], ['Policy', q.policy || undefined],
      ['Operator policy', q.operator_policy || undefined],
      ['Effective policy definition', Object.keys(q.effective_policy_definition ?? {}).length ? show(q.effective_policy_definition) : undefined],
      ['Node', q.node], ['State', state(q)], ['Consumers', num(q.consumers)],
      ['Exclusive owner', q.owner_pid_details?.name],
      ['Messages', h('span', { class: 'messages-total' }, num(q.messages))], ['Ready', num(q.messages_ready)],
      ['Unacked', num(q.messages_unacknowledged)],
      ['Message body bytes', bytes(q.message_bytes)], ['Paged out', q.messages_paged_out ? num(q.messages_paged_out) : undefined],
    ]));
    fill(consumers, table([
      { title: 'Channel', value: (c) => link(`#/channels/${encodeURIComponent(c.channel_details.name)}`, c.channel_details.name) },
      { title: 'Consumer tag', value: (c) => c.consumer_tag },
      { title: 'Ack required', value: (c) => (c.ack_required ? '●' : '○') },
      { title: 'Exclusive', value: (c) => (c.exclusive ? '●' : '○') },
      { title: 'Prefetch count', value: (c) => num(c.prefetch_count), num: true },
      { title: 'Active', value: (c) => (c.active === false ? '○' : '●') },
      { title: 'Arguments', value: (c) => show(c.arguments) },
    ], q.consumer_details ?? [], { label: 'Consumers', empty: 'No consumers.' }));
  };
  return () => refresh();
}
