// Publishing a message (an exchange's or a queue's page) and getting messages (a queue's page).

import { path, post } from './api.js';
import { exchangeName, facts, fill, h, num, show, showNotice } from './dom.js';
import { form } from './forms.js';

const PROPERTY_HINTS = [
  ['content_type', 'String'], ['content_encoding', 'String'], ['priority', 'Number'], ['correlation_id', 'String'],
  ['reply_to', 'String'], ['expiration', 'String'], ['message_id', 'String'], ['timestamp', 'Number'],
  ['type', 'String'], ['user_id', 'String'], ['app_id', 'String'],
];

/**
 * The "Publish message" form. On a queue's page the message goes through the default exchange
 * with the queue's name as routing key (routingKey given), as RabbitMQ's page does.
 */
export function publishForm(vhost, exchange, routingKey) {
  const fields = [];
  if (routingKey === undefined) fields.push({ name: 'routing_key', label: 'Routing key' });
  fields.push(
    { name: 'delivery_mode', label: 'Delivery mode', type: 'select', options: [['1', '1 - Non-persistent'], ['2', '2 - Persistent']] },
    { name: 'headers', label: 'Headers', type: 'args' },
    { name: 'properties', label: 'Properties', type: 'args', hints: PROPERTY_HINTS, types: ['String', 'Number'] },
    { name: 'payload', label: 'Payload', type: 'textarea' },
    { name: 'payload_encoding', label: 'Payload encoding', type: 'select', options: [['string', 'String (default)'], ['base64', 'Base64']] },
  );
  return form({
    label: 'Publish message',
    fields,
    submit: 'Publish message',
    onSubmit: async (v) => {
      const properties = { ...v.properties, delivery_mode: Number(v.delivery_mode) };
      if (Object.keys(v.headers).length) properties.headers = v.headers;
      const reply = await post(path`/exchanges/${vhost}/${exchange === '' ? 'amq.default' : exchange}/publish`, {
        properties, routing_key: routingKey ?? v.routing_key, payload: v.payload, payload_encoding: v.payload_encoding,
      });
      showNotice(reply?.routed === false ? 'Message published, but not routed.' : 'Message published.');
    },
  });
}

/** The "Get messages" form and the messages it got. */
export function getForm(vhost, queue, afterGet) {
  const results = h('div', { class: 'got', 'aria-live': 'polite' });
  const el = form({
    label: 'Get messages',
    keep: true,
    fields: [
      { name: 'ackmode', label: 'Ack Mode', type: 'select', options: [
        ['ack_requeue_true', 'Nack message requeue true'], ['ack_requeue_false', 'Automatic ack'],
        ['reject_requeue_true', 'Reject requeue true'], ['reject_requeue_false', 'Reject requeue false']] },
      { name: 'encoding', label: 'Encoding', type: 'select', options: [['auto', 'Auto string / base64'], ['base64', 'base64']] },
      { name: 'count', label: 'Messages', type: 'number', value: '1', min: 1 },
      { name: 'truncate', label: 'Truncate (bytes)', type: 'number', value: '50000', min: 1 },
    ],
    submit: 'Get Message(s)',
    onSubmit: async (v) => {
      const got = await post(path`/queues/${vhost}/${queue}/get`, {
        count: v.count ?? 1, ackmode: v.ackmode, encoding: v.encoding, truncate: v.truncate,
      });
      fill(results, got.length ? got.map(message) : h('p', { class: 'warning' }, 'Queue is empty'));
      afterGet?.();
    },
  });
  return h('div', {}, el, results);
}

function message(m, i) {
  return h('div', { class: 'message-box' },
    h('h3', {}, `Message ${i + 1}`),
    h('p', {}, `The server reported ${num(m.message_count)} messages remaining.`),
    facts([
      ['Exchange', exchangeName(m.exchange)], ['Routing Key', m.routing_key], ['Redelivered', m.redelivered ? '●' : '○'],
      ['Properties', h('div', {}, Object.entries(m.properties ?? {}).map(([k, v]) => h('div', {}, `${k}: ${show(v)}`)))],
      ['Payload', h('div', {}, h('small', {}, `${num(m.payload_bytes)} bytes, Encoding: ${m.payload_encoding}`),
        h('pre', { class: 'payload' }, m.payload))],
    ]));
}
