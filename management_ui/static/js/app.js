// The dashboard's entry point: login and logout, the header, the routes, the refresh timer.

import * as api from './api.js';
import { chooseVhost, context, hasTag, vhostsChanged } from './context.js';
import { fill, h, showError, time } from './dom.js';
import { loadExtensions } from './extensions.js';
import { channelPage, channelsPage } from './pages/channels.js';
import { connectionPage, connectionsPage } from './pages/connections.js';
import { exchangePage, exchangesPage } from './pages/exchanges.js';
import { limitsPage } from './pages/limits.js';
import { overviewPage } from './pages/overview.js';
import { policiesPage } from './pages/policies.js';
import { queuePage, queuesPage } from './pages/queues.js';
import { userPage, usersPage } from './pages/users.js';
import { vhostPage, vhostsPage } from './pages/vhosts.js';
import { refreshCurrent, route, show } from './router.js';

route('#/', overviewPage, 'overview');
route('#/connections', connectionsPage, 'connections');
route('#/connections/:name', connectionPage, 'connections');
route('#/channels', channelsPage, 'channels');
route('#/channels/:name', channelPage, 'channels');
route('#/exchanges', exchangesPage, 'exchanges');
route('#/exchanges/:vhost/:name', exchangePage, 'exchanges');
route('#/queues', queuesPage, 'queues');
route('#/queues/:vhost/:name', queuePage, 'queues');
route('#/users', usersPage, 'admin');
route('#/users/:name', userPage, 'admin');
route('#/vhosts', vhostsPage, 'admin');
route('#/vhosts/:name', vhostPage, 'admin');
route('#/policies', policiesPage, 'admin');
route('#/limits', limitsPage, 'admin');

const $ = (id) => document.getElementById(id);
let timer = null;

function showLogin(message = '') {
  clearInterval(timer);
  timer = null;
  $('app').hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  document.title = 'Management: login';
}

async function login(event) {
  event.preventDefault();
  const form = event.target;
  const username = form.username.value;
  const password = form.password.value;
  api.saveCredentials(username, password);
  try {
    await start();
    form.reset();
  } catch (error) {
    api.forgetCredentials();
    showLogin(error.reason ?? String(error));
  }
}

function logout() {
  api.forgetCredentials();
  $('main').replaceChildren();
  $('messages').replaceChildren();
  showLogin();
}

async function start() {
  context.user = await api.get('/whoami', { auth: api.credentials().header });
  const overview = await api.get('/overview');
  context.overview = overview;
  $('product-version').textContent = `${overview.product_name ?? 'RabbitMQ'} ${overview.product_version ?? overview.rabbitmq_version ?? ''}`;
  const runtime = overview.erlang_full_version ?? '';
  $('runtime-version').textContent = runtime.startsWith('Erlang') ? `Erlang ${overview.erlang_version}` : runtime.split(' (')[0];
  $('cluster-name').textContent = overview.cluster_name ?? '';
  $('current-user').textContent = context.user.name;
  $('admin-tab').hidden = !hasTag('administrator', 'policymaker');
  // A policymaker's Admin tab has the policies only.
  $('admin-tab').querySelector('a').href = hasTag('administrator') ? '#/users' : '#/policies';
  document.title = `Management: ${overview.cluster_name ?? ''}`;
  await loadExtensions(); // before the first render: a reload on a plugin's page shows it
  $('login').hidden = true;
  $('app').hidden = false;
  await render();
  startTimer();
}

function fillVhostSelect() {
  if (context.vhost && !context.vhosts.includes(context.vhost)) chooseVhost('');
  fill($('vhost-select'), h('option', { value: '' }, 'All'),
    context.vhosts.map((v) => h('option', { value: v, selected: v === context.vhost }, v)));
}

function markTab(tab) {
  for (const a of document.querySelectorAll('#tabs a')) {
    const on = a.dataset.tab === tab;
    a.classList.toggle('selected', on);
    if (on) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function refreshed() {
  $('refreshed').textContent = time(Date.now());
}

async function render() {
  if ($('app').hidden) return;
  try {
    await vhostsChanged(); // forms offer the vhosts there are now, whoever made them
    await show($('main'), markTab);
    refreshed();
  } catch (error) {
    showError(error);
  }
}

function startTimer() {
  clearInterval(timer);
  const interval = Number($('refresh-interval').value);
  timer = interval ? setInterval(tick, interval) : null;
}

async function tick() {
  if (document.hidden) return;
  try {
    await refreshCurrent();
    refreshed();
  } catch (error) {
    showError(error);
  }
}

api.onUnauthorized((error) => {
  // Only a failed login (a changed password, a deleted user) ends the session; other 401s
  // (a tag the user lacks) are errors like any other.
  if (error.reason === 'Login failed') {
    api.forgetCredentials();
    showLogin(error.reason);
  }
});

$('login-form').addEventListener('submit', login);
$('logout').addEventListener('click', logout);
$('refresh-interval').value = localStorage.getItem('management.refresh') ?? '5000';
$('refresh-interval').addEventListener('change', () => {
  localStorage.setItem('management.refresh', $('refresh-interval').value);
  startTimer();
});
$('vhost-select').addEventListener('change', () => {
  chooseVhost($('vhost-select').value);
  render();
});
window.addEventListener('hashchange', render);

window.addEventListener('vhosts-changed', fillVhostSelect);

if (api.credentials()) {
  start().catch((error) => showLogin(error.reason ?? String(error)));
} else {
  showLogin();
}
