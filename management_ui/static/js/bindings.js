// Bindings of a queue or an exchange: the table with "Unbind" buttons and the form that adds one.

import { del, get, path, post } from './api.js';
import { attempt, button, exchangeName, fill, h, link, show, showNotice, table } from './dom.js';
import { form } from './forms.js';

const dtype = (b) => (b.destination_type === 'queue' ? 'q' : 'e');

function unbind(b, refresh) {
  if (b.source === '') return null;  // the default exchange's implicit binding cannot be removed
  return button('Unbind', () => attempt(async () => {
    await del(path`/bindings/${b.vhost}/e/${b.source}/${dtype(b)}/${b.destination}/${b.properties_key}`);
    showNotice('Binding removed.');
    await refresh();
  }));
}

export function exchangeLink(vhost, name) {
  return link(`#/exchanges/${encodeURIComponent(vhost)}/${encodeURIComponent(name === '' ? 'amq.default' : name)}`, exchangeName(name));
}

export function queueLink(vhost, name) {
  return link(`#/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(name)}`, name);
}

function destinationLink(b) {
  return b.destination_type === 'queue' ? queueLink(b.vhost, b.destination) : exchangeLink(b.vhost, b.destination);
}

/** A queue's bindings (from exchanges) and the form binding it to one. */
export function queueBindings(vhost, queue) {
  const list = h('div');
  const refresh = async () => {
    const bindings = await get(path`/queues/${vhost}/${queue}/bindings`);
    fill(list, table([
      { title: 'From', value: (b) => (b.source === '' ? '(Default exchange binding)' : exchangeLink(b.vhost, b.source)) },
      { title: 'Routing key', value: (b) => b.routing_key },
      { title: 'Arguments', value: (b) => show(b.arguments) },
      { title: '', value: (b) => unbind(b, refresh) },
    ], bindings, { label: 'Bindings', empty: 'No bindings.' }));
  };
  const add = form({
    label: 'Add binding to this queue',
    fields: [
      { name: 'source', label: 'From exchange', required: true },
      { name: 'routing_key', label: 'Routing key' },
      { name: 'arguments', label: 'Arguments', type: 'args' },
    ],
    submit: 'Bind',
    onSubmit: async (v) => {
      await post(path`/bindings/${vhost}/e/${v.source}/q/${queue}`, { routing_key: v.routing_key, arguments: v.arguments });
      showNotice('Binding added.');
      await refresh();
    },
  });
  return { el: h('div', {}, list, h('h3', {}, 'Add binding to this queue'), add), refresh };
}

/** An exchange's bindings (to queues and exchanges, and from exchanges) and the form adding one. */
export function exchangeBindings(vhost, exchange) {
  const outgoing = h('div');
  const incoming = h('div');
  const refresh = async () => {
    const [source, destination] = await Promise.all([
      get(path`/exchanges/${vhost}/${exchange}/bindings/source`),
      get(path`/exchanges/${vhost}/${exchange}/bindings/destination`),
    ]);
    fill(outgoing, table([
      { title: 'To', value: destinationLink },
      { title: 'Type', value: (b) => b.destination_type },
      { title: 'Routing key', value: (b) => b.routing_key },
      { title: 'Arguments', value: (b) => show(b.arguments) },
      { title: '', value: (b) => unbind(b, refresh) },
    ], source, { label: 'Bindings from this exchange', empty: 'No bindings.' }));
    fill(incoming, destination.length ? [h('h3', {}, 'Bound from'), table([
      { title: 'From', value: (b) => exchangeLink(b.vhost, b.source) },
      { title: 'Routing key', value: (b) => b.routing_key },
      { title: 'Arguments', value: (b) => show(b.arguments) },
      { title: '', value: (b) => unbind(b, refresh) },
    ], destination, { label: 'Bindings to this exchange' })] : null);
  };
  const add = form({
    label: 'Add binding from this exchange',
    fields: [
      { name: 'type', label: 'To', type: 'select', options: [['q', 'To queue'], ['e', 'To exchange']] },
      { name: 'destination', label: 'Destination name', required: true },
      { name: 'routing_key', label: 'Routing key' },
      { name: 'arguments', label: 'Arguments', type: 'args' },
    ],
    submit: 'Bind',
    onSubmit: async (v) => {
      await post(path`/bindings/${vhost}/e/${exchange}/${v.type}/${v.destination}`, { routing_key: v.routing_key, arguments: v.arguments });
      showNotice('Binding added.');
      await refresh();
    },
  });
  return { el: h('div', {}, outgoing, incoming, h('h3', {}, 'Add binding from this exchange'), add), refresh };
}
