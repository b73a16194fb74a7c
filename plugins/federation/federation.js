// The dashboard's Federation Status page (rabbitmq_federation_management's): the running links
// of GET /api/federation-links. A dashboard extension: see docs/plugins.md.

const STATE_CLASS = { running: 'running', starting: 'starting', error: 'error' };

function federationPage({ api, session, dom }, view) {
  const { h } = dom;
  const list = h('div');
  // A federated exchange or queue links to its own page; the upstream's name when it differs.
  const local = (l) => (l.type === 'exchange'
    ? dom.link(api.path`#/exchanges/${l.vhost}/${l.exchange}`, dom.exchangeName(l.exchange))
    : dom.link(api.path`#/queues/${l.vhost}/${l.queue}`, l.queue));
  const upstreamName = (l) => (l.type === 'exchange' ? l.upstream_exchange : l.upstream_queue);
  view.append(h('h1', {}, 'Federation Status'), dom.section('Running Links', list));
  return async () => {
    const links = await api.get(session.scoped('/federation-links'));
    dom.fill(list, dom.table([
      { title: 'Upstream', value: (l) => [l.upstream, upstreamName(l) !== (l.exchange ?? l.queue) && [' ', h('sub', {}, upstreamName(l))]] },
      { title: 'URI', value: (l) => l.uri },
      { title: 'Virtual host', value: (l) => l.vhost },
      { title: 'Exchange / Queue', value: (l) => [local(l), ' ', h('sub', {}, l.type)] },
      { title: 'State', value: (l) => [h('span', { class: `state ${STATE_CLASS[l.status] ?? ''}` }, l.status),
        l.error && h('pre', { class: 'payload' }, l.error)] },
      { title: 'Last changed', value: (l) => l.timestamp },
      { title: 'ID', value: (l) => l.id },
      { title: 'Consumer tag', value: (l) => l.consumer_tag ?? '' },
    ], links, { label: 'Federation links', empty: '... no links ...' }));
  };
}

export default function register(ui) {
  ui.addTab({ tab: 'federation', title: 'Federation Status', href: '#/federation' });
  ui.route('#/federation', (view) => federationPage(ui, view), 'federation');
}
