// Long lists: RabbitMQ's pagination bar (page, filter, regex, page size) and sortable column
// headers over the API's page/page_size/name/use_regex/sort/sort_reverse parameters. Each list
// keeps its settings while the page is open and across visits.

import { ApiError, get, query } from './api.js';
import { attempt, fill, h, num } from './dom.js';

const settings = new Map();

/**
 * A paged, filtered list. `key` names its settings; `source()` is the API path of the whole
 * list; `render(items)` draws the rows. Returns {el, refresh}.
 */
export function pagedList(key, source, render, { noun = 'items' } = {}) {
  const state = settings.get(key) ?? { page: 1, pageSize: 100, name: '', regex: false, sort: '', reverse: false };
  settings.set(key, state);
  let refresh;
  let timer; // the filter's pending debounce
  const changed = (resetPage) => {
    // A filter still being typed applies now, not after this change (it would start again at
    // page 1 then, under a page the user has just picked).
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
      if (state.name !== filter.value) {
        state.name = filter.value;
        resetPage = true;
      }
    }
    if (resetPage) state.page = 1;
    attempt(refresh);
  };
  // A sortable header sorts on its key; once more, the other way round (RabbitMQ's headers).
  const sortBy = (sortKey) => {
    state.reverse = state.sort === sortKey ? !state.reverse : false;
    state.sort = sortKey;
    changed(false);
  };
  const sortable = (el) => {
    for (const th of el.querySelectorAll('th[data-sort]')) {
      const on = th.dataset.sort === state.sort;
      th.setAttribute('aria-sort', on ? (state.reverse ? 'descending' : 'ascending') : 'none');
      th.replaceChildren(h('button', { type: 'button', class: 'sort', onclick: () => sortBy(th.dataset.sort) },
        th.textContent, on ? (state.reverse ? ' ▼' : ' ▲') : ''));
    }
  };

  const page = h('select', { 'aria-label': 'Page', onchange: () => { state.page = Number(page.value); changed(false); } });
  const pageCount = h('span');
  const filter = h('input', {
    type: 'search', value: state.name, oninput: () => {
      clearTimeout(timer);
      timer = setTimeout(() => changed(true), 300);
    },
  });
  const regex = h('input', { type: 'checkbox', checked: state.regex, onchange: () => { state.regex = regex.checked; changed(true); } });
  const size = h('input', {
    type: 'number', min: 1, max: 500, value: state.pageSize, class: 'page-size', onchange: () => {
      state.pageSize = Math.min(500, Math.max(1, Number(size.value) || 100));
      changed(true);
    },
  });
  const shown = h('span');
  const bar = h('div', { class: 'pagination' },
    h('div', {}, h('label', {}, 'Page ', page), ' ', pageCount, ' ',
      h('label', {}, 'Filter: ', filter), ' ', h('label', {}, regex, ' Regex')),
    h('div', {}, shown, ' ', h('label', {}, 'page size up to: ', size)));
  const body = h('div', { class: 'list-body' });

  let latest = 0;
  refresh = async () => {
    // A change of page or filter while an older request is out: only the latest one is drawn.
    const mine = ++latest;
    const params = {
      page: state.page, page_size: state.pageSize, name: state.name, use_regex: state.regex, pagination: true,
      sort: state.sort, sort_reverse: state.sort ? state.reverse : undefined,
    };
    let data;
    try {
      data = await get(source() + query(params));
    } catch (error) {
      // The list shrank under the current page: RabbitMQ answers 400; start again at page 1.
      if (!(error instanceof ApiError && error.status === 400 && state.page > 1)) throw error;
      state.page = 1;
      data = await get(source() + query({ ...params, page: 1 }));
    }
    if (mine !== latest) return data;
    const pages = Math.max(1, data.page_count);
    fill(page, Array.from({ length: pages }, (_, i) => h('option', { value: i + 1, selected: i + 1 === data.page }, i + 1)));
    pageCount.textContent = `of ${pages}`;
    const filtered = data.filtered_count !== data.total_count ? ` (filtered from ${num(data.total_count)})` : '';
    shown.textContent = `Displaying ${num(data.item_count)} of ${num(data.filtered_count)} ${noun}${filtered},`;
    fill(body, render(data.items));
    sortable(body);
    return data;
  };
  return { el: h('div', { class: 'paged' }, bar, body), refresh: () => refresh() };
}
