// The dashboard's Shovel Status page (rabbitmq_shovel_management's): the shovels of
// GET /api/shovels, deleting one (its runtime parameter), and "Add a new shovel"
// (PUT /api/parameters/shovel/VHOST/NAME). A dashboard extension: see docs/plugins.md.

const STATE_CLASS = { running: 'running', starting: 'starting', terminated: 'terminated' };

/** Where a side of a shovel reads or writes, as RabbitMQ's fmt_shovel_endpoint. */
function endpoint(shovel, prefix) {
  const queue = shovel[`${prefix}queue`];
  if (queue !== undefined) return `queue: ${queue}`;
  const exchange = shovel[`${prefix}exchange`];
  if (exchange === undefined) return '';
  const key = shovel[`${prefix}exchange_key`];
  return `exchange: ${exchange === '' ? '(AMQP default)' : exchange}${key ? ` (${key})` : ''}`;
}

function shovelsPage(ui, view) {
  const { api, session, dom, forms } = ui;
  const { h } = dom;
  const manage = session.hasTag('administrator', 'policymaker');
  const list = h('div');
  const refresh = async () => {
    const shovels = await api.get(session.scoped('/shovels'));
    dom.fill(list, dom.table([
      { title: 'Name', value: (s) => [s.name, ' ', h('sub', {}, s.type)] },
      { title: 'Virtual host', value: (s) => s.vhost },
      { title: 'State', value: (s) => [h('span', { class: `state ${STATE_CLASS[s.state] ?? ''}` }, s.state),
        s.reason && h('pre', { class: 'payload' }, s.reason)] },
      { title: 'Source', value: (s) => s.src_uri && [s.src_protocol, ' ', s.src_uri, h('br'), endpoint(s, 'src_')] },
      { title: 'Destination', value: (s) => s.dest_uri && [s.dest_protocol, ' ', s.dest_uri, h('br'), endpoint(s, 'dest_')] },
      { title: 'Last changed', value: (s) => s.timestamp },
      manage && { title: 'Operations', value: (s) => forms.confirmButton('Delete', `Delete shovel ${s.name}?`, async () => {
        await api.del(api.path`/parameters/shovel/${s.vhost}/${s.name}`);
        dom.showNotice(`Shovel ${s.name} deleted.`);
        await refresh();
      }) },
    ].filter(Boolean), shovels, { label: 'Shovels', empty: '... no shovels ...' }));
  };
  view.append(h('h1', {}, 'Shovel Status'), list);
  if (manage) view.append(dom.section('Add a new shovel', addShovelForm(ui, refresh), { open: false }));
  return refresh;
}

function addShovelForm({ api, session, forms, dom }, refresh) {
  const kinds = [['queue', 'Queue'], ['exchange', 'Exchange']];
  return forms.form({
    label: 'Add a new shovel',
    fields: [
      { name: 'vhost', label: 'Virtual host', type: 'select', options: session.vhosts, value: session.defaultVhost() },
      { name: 'name', label: 'Name', required: true },
      { name: 'srcUri', label: 'Source URI', value: 'amqp://', required: true, help: 'amqp:// is this node' },
      { name: 'srcKind', label: 'Source type', type: 'select', options: kinds },
      { name: 'src', label: 'Source queue or exchange', required: true },
      { name: 'srcKey', label: 'Source routing key', help: 'exchange only' },
      { name: 'prefetch', label: 'Prefetch count', type: 'number', min: 1 },
      { name: 'deleteAfter', label: 'Auto-delete', type: 'select', options: [['never', 'Never'], ['queue-length', 'After initial length transferred']] },
      { name: 'destUri', label: 'Destination URI', value: 'amqp://', required: true },
      { name: 'destKind', label: 'Destination type', type: 'select', options: kinds },
      { name: 'dest', label: 'Destination queue or exchange', required: true },
      { name: 'destKey', label: 'Destination routing key', help: 'exchange only' },
      { name: 'forward', label: 'Add forwarding headers', type: 'checkbox' },
      { name: 'reconnect', label: 'Reconnect delay (s)', type: 'number', min: 0 },
      { name: 'ackMode', label: 'Acknowledgement mode', type: 'select', options: ['on-confirm', 'on-publish', 'no-ack'] },
    ],
    submit: 'Add shovel',
    onSubmit: async (v) => {
      const value = { 'src-protocol': 'amqp091', 'src-uri': v.srcUri, 'dest-protocol': 'amqp091', 'dest-uri': v.destUri,
        [`src-${v.srcKind}`]: v.src, [`dest-${v.destKind}`]: v.dest, 'ack-mode': v.ackMode,
        'src-delete-after': v.deleteAfter, 'dest-add-forward-headers': v.forward };
      if (v.srcKind === 'exchange' && v.srcKey) value['src-exchange-key'] = v.srcKey;
      if (v.destKind === 'exchange' && v.destKey) value['dest-exchange-key'] = v.destKey;
      if (v.prefetch !== undefined) value['src-prefetch-count'] = v.prefetch;
      if (v.reconnect !== undefined) value['reconnect-delay'] = v.reconnect;
      await api.put(api.path`/parameters/shovel/${v.vhost}/${v.name}`, { component: 'shovel', vhost: v.vhost, name: v.name, value });
      dom.showNotice(`Shovel ${v.name} added.`);
      await refresh();
    },
  });
}

export default function register(ui) {
  ui.addTab({ tab: 'shovels', title: 'Shovel Status', href: '#/shovels' });
  ui.route('#/shovels', (view) => shovelsPage(ui, view), 'shovels');
}
