// Overview: queued messages and message rates charts, global counts, nodes, alarms, listeners.

import { get, query } from '../api.js';
import { LAST_MINUTE, lengthsChart, ratesChart } from '../charts.js';
import { canMonitor } from '../context.js';
import { bytes, duration, fill, h, num, section, table } from '../dom.js';

export function overviewPage(view) {
  const lengths = h('div');
  const rates = h('div');
  const counts = h('div', { class: 'counts' });
  const nodes = h('div');
  const alarms = h('div');
  const ports = h('div');
  view.append(
    h('h1', {}, 'Overview'),
    section('Totals', [
      h('h3', {}, 'Queued messages ', h('span', { class: 'small' }, 'last minute')), lengths,
      h('h3', {}, 'Message rates ', h('span', { class: 'small' }, 'last minute')), rates,
      h('h3', {}, 'Global counts'), counts]),
    canMonitor() ? section('Nodes', nodes) : null,
    canMonitor() ? section('Alarms', alarms) : null,
    section('Ports and contexts', ports, { open: false }));

  return async () => {
    const [overview, nodeList] = await Promise.all([
      get('/overview' + query(LAST_MINUTE)),
      canMonitor() ? get('/nodes') : Promise.resolve([]),
    ]);
    fill(lengths, lengthsChart(overview.queue_totals));
    fill(rates, ratesChart(overview.message_stats));
    const totals = overview.object_totals ?? {};
    fill(counts, [
      ['Connections', '#/connections'], ['Channels', '#/channels'], ['Exchanges', '#/exchanges'],
      ['Queues', '#/queues'], ['Consumers', null],
    ].map(([name, href]) => h(href ? 'a' : 'span', { class: 'count', href }, `${name}: `, h('strong', {}, num(totals[name.toLowerCase()] ?? 0)))));
    fill(nodes, nodesTable(nodeList));
    fill(alarms, alarmList(nodeList));
    fill(ports, portsTables(overview));
  };
}

function usage(used, total, text) {
  const fraction = total ? Math.min(1, used / total) : 0;
  return h('div', { class: 'usage' },
    h('div', { class: 'bar' }, h('div', { class: 'used', style: `width:${(fraction * 100).toFixed(1)}%` })),
    h('div', {}, text));
}

function nodesTable(nodeList) {
  return table([
    { title: 'Name', value: (n) => n.name },
    { title: 'File descriptors', value: (n) => usage(n.fd_used, n.fd_total, `${num(n.fd_used)} / ${num(n.fd_total)}`) },
    { title: 'Socket descriptors', value: (n) => usage(n.sockets_used, n.sockets_total, `${num(n.sockets_used)} / ${num(n.sockets_total)}`) },
    { title: 'Memory', value: (n) => usage(n.mem_used, n.mem_limit, `${bytes(n.mem_used)} (high watermark ${bytes(n.mem_limit)})`) },
    { title: 'Disk space', value: (n) => h('div', {}, bytes(n.disk_free), h('div', { class: 'small' }, `low watermark ${bytes(n.disk_free_limit)}`)) },
    { title: 'Uptime', value: (n) => duration(n.uptime) },
    { title: 'Info', value: (n) => [n.rates_mode, n.type, n.running === false ? 'not running' : null].filter(Boolean).map((t) => h('span', { class: 'tag' }, t)) },
  ], nodeList, { label: 'Nodes', empty: 'No nodes.' });
}

function alarmList(nodeList) {
  const raised = nodeList.flatMap((n) => [
    n.mem_alarm && `Memory alarm on ${n.name}: ${bytes(n.mem_used)} used, high watermark ${bytes(n.mem_limit)}`,
    n.disk_free_alarm && `Disk alarm on ${n.name}: ${bytes(n.disk_free)} free, low watermark ${bytes(n.disk_free_limit)}`,
  ].filter(Boolean));
  if (!raised.length) return h('p', { class: 'ok' }, 'No alarms in effect.');
  return h('ul', { class: 'alarms' }, raised.map((text) => h('li', {}, text)));
}

function portsTables(overview) {
  return [
    h('h3', {}, 'Listening ports'),
    table([
      { title: 'Protocol', value: (l) => l.protocol },
      { title: 'Bound to', value: (l) => l.ip_address },
      { title: 'Port', value: (l) => l.port, num: true },
    ], overview.listeners ?? [], { label: 'Listening ports' }),
    h('h3', {}, 'Web contexts'),
    table([
      { title: 'Context', value: (c) => c.description },
      { title: 'Port', value: (c) => c.port, num: true },
      { title: 'Path', value: (c) => c.path },
    ], overview.contexts ?? [], { label: 'Web contexts' }),
  ];
}
