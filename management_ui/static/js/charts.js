// Line charts in hand-drawn SVG, from the API's `*_details.samples` (newest first), with a
// legend of current values beside them, as RabbitMQ's overview shows them.

import { h, num } from './dom.js';

const SVG = 'http://www.w3.org/2000/svg';

// RabbitMQ's chart colours, in its order.
export const COLORS = ['#edc240', '#afd8f8', '#cb4b4b', '#4da74d', '#9440ed', '#666666', '#aaaaaa',
  '#7c79c3', '#8e6767', '#67808e', '#e5e4ae', '#4b4a2e', '#bca0cb'];

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) el.append(c);
  return el;
}

/** [[time, value], ...] oldest first, from samples as the API gives them. */
export function points(samples) {
  return [...(samples ?? [])].reverse().map((x) => [x.timestamp, x.sample]);
}

/** Per-second rates between consecutive samples of a counter. */
export function ratePoints(samples) {
  const p = points(samples);
  const out = [];
  for (let i = 1; i < p.length; i++) {
    const seconds = (p[i][0] - p[i - 1][0]) / 1000;
    out.push([p[i][0], seconds > 0 ? Math.max(0, (p[i][1] - p[i - 1][1]) / seconds) : 0]);
  }
  return out;
}

function niceMax(v) {
  if (v <= 0) return 1;
  const base = 10 ** Math.floor(Math.log10(v));
  return [1, 2, 2.5, 5, 10].map((m) => m * base).find((m) => m >= v);
}

function clock(ms) {
  return new Date(ms).toTimeString().slice(0, 8);
}

/**
 * A chart and its legend. series: [{label, color, points, current}], where current is the
 * legend's text for the latest value. `rate` labels the axis per second.
 */
export function chart({ label, series, rate = false, width = 400, height = 130 }) {
  const left = 44;
  const right = 8;
  const top = 8;
  const bottom = 20;
  const all = series.flatMap((x) => x.points);
  const now = Date.now();
  const t0 = all.length ? Math.min(...all.map((p) => p[0])) : now - 60000;
  const t1 = all.length ? Math.max(...all.map((p) => p[0])) : now;
  const span = Math.max(1, t1 - t0);
  const ymax = niceMax(Math.max(0, ...all.map((p) => p[1])));
  const x = (t) => left + ((t - t0) / span) * (width - left - right);
  const y = (v) => top + (1 - v / ymax) * (height - top - bottom);

  const svg = s('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', 'aria-label': label, class: 'chart' });
  for (let i = 0; i <= 4; i++) {
    const v = (ymax * i) / 4;
    svg.append(s('line', { x1: left, x2: width - right, y1: y(v), y2: y(v), class: 'grid' }));
    const text = rate ? `${+v.toFixed(2)}/s` : num(+v.toFixed(2));
    svg.append(s('text', { x: left - 4, y: y(v) + 4, 'text-anchor': 'end', class: 'axis' }, text));
  }
  const ticks = 5;
  for (let i = 0; i <= ticks; i++) {
    const t = t0 + (span * i) / ticks;
    const anchor = i === 0 ? 'start' : i === ticks ? 'end' : 'middle';
    svg.append(s('text', { x: x(t), y: height - 4, 'text-anchor': anchor, class: 'axis' }, clock(t)));
  }
  svg.append(s('rect', { x: left, y: top, width: width - left - right, height: height - top - bottom, class: 'frame' }));
  for (const serie of series) {
    if (!serie.points.length) continue;
    const d = serie.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(' ');
    svg.append(s('polyline', { points: d, fill: 'none', stroke: serie.color, 'stroke-width': 2 }));
  }
  const legend = h('table', { class: 'legend' }, h('tbody', {}, series.map((serie) =>
    h('tr', {}, h('th', { scope: 'row' }, serie.label),
      h('td', {}, h('span', { class: 'swatch', style: `background:${serie.color}` }), serie.current)))));
  return h('div', { class: 'chart-box' }, h('figure', {}, svg), legend);
}

/** The "queued messages" chart of an object with messages*_details (overview's queue_totals, a queue). */
export function lengthsChart(obj, label = 'Queued messages') {
  const series = [
    ['Ready', 'messages_ready', COLORS[0]],
    ['Unacked', 'messages_unacknowledged', COLORS[1]],
    ['Total', 'messages', COLORS[2]],
  ].map(([name, key, color]) => ({
    label: name, color, points: points(obj?.[`${key}_details`]?.samples), current: num(obj?.[key] ?? 0),
  }));
  return chart({ label, series });
}

// Message rates as RabbitMQ labels them, in its order.
const RATES = [
  ['publish', 'Publish'], ['confirm', 'Publisher confirm'], ['deliver', 'Deliver (manual ack)'],
  ['deliver_no_ack', 'Deliver (auto ack)'], ['ack', 'Consumer ack'], ['redeliver', 'Redelivered'],
  ['get', 'Get (manual ack)'], ['get_no_ack', 'Get (auto ack)'], ['get_empty', 'Get (empty)'],
  ['return_unroutable', 'Unroutable (return)'], ['drop_unroutable', 'Unroutable (drop)'],
  ['disk_reads', 'Disk read'], ['disk_writes', 'Disk write'],
];

/** The "message rates" chart of message_stats: the kinds it has, in RabbitMQ's order. */
export function ratesChart(stats, label = 'Message rates') {
  const series = RATES.map(([key, name], i) => ({ key, name, color: COLORS[i % COLORS.length] }))
    .filter(({ key }) => stats?.[`${key}_details`])
    .map(({ key, name, color }) => ({
      label: name, color, points: ratePoints(stats[`${key}_details`].samples),
      current: `${(stats[`${key}_details`].rate ?? 0).toFixed(2)}/s`,
    }));
  if (!series.length) return h('p', { class: 'empty' }, 'No message rates yet.');
  return chart({ label, series, rate: true });
}

/** The age/increment parameters that ask for a minute of samples, every 5 s. */
export const LAST_MINUTE = { lengths_age: 60, lengths_incr: 5, msg_rates_age: 60, msg_rates_incr: 5 };
