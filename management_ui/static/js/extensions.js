// Dashboard extensions of plugins, as RabbitMQ's: GET /api/extensions lists the JavaScript
// modules of the enabled plugins ({"javascript": path under js/}); after login each is
// imported once and its default export is called with `ui`, the registration API below
// (docs/plugins.md, "Dashboard pages"). A plugin disabled later keeps its tab until a reload.

import * as api from './api.js';
import { context, defaultVhost, hasTag, scoped } from './context.js';
import * as dom from './dom.js';
import * as forms from './forms.js';
import { route } from './router.js';

/** A tab in the main navigation, before Admin: { tab, title, href } (`tab` as route's). */
function addTab({ tab, title, href }) {
  const tabs = document.getElementById('tabs');
  const item = dom.h('li', { 'data-extension': tab }, dom.h('a', { href, 'data-tab': tab }, title));
  tabs.insertBefore(item, document.getElementById('admin-tab'));
}

/** The logged-in user, the vhosts and the one chosen at the top right ('' for all). */
const session = Object.freeze({
  get user() { return context.user; },
  get vhosts() { return context.vhosts; },
  get vhost() { return context.vhost; },
  hasTag,
  scoped,
  defaultVhost,
});

const ui = Object.freeze({ route, addTab, api, dom, forms, session });
const imported = new Set();

/** Import the modules of the enabled plugins not imported yet; a failing one is shown, not fatal. */
export async function loadExtensions() {
  let listed;
  try {
    listed = await api.get('/extensions');
  } catch (error) {
    dom.showError(error);
    return;
  }
  for (const { javascript } of listed.filter((item) => item.javascript)) {
    if (imported.has(javascript)) continue;
    imported.add(javascript);
    try {
      const module = await import(`./${javascript}`);
      module.default(ui);
    } catch (error) {
      dom.showError(`Dashboard extension ${javascript}: ${error?.message ?? error}`);
    }
  }
}
