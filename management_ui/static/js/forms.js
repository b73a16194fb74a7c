// Forms as RabbitMQ's: labelled fields in a grid, an arguments editor (key = value, type),
// submitting through the API with errors shown in the message area.

import { attempt, h } from './dom.js';

let serial = 0;

/**
 * A form. fields: [{name, label, type, options, value, required, hints, help}], where type is
 * text (default), password, number, select (options: values or [value, text]), textarea,
 * checkbox or args (an arguments editor; hints: [[key, type], ...]).
 * onSubmit(values) is async; the form is reset after it succeeds unless keep is set.
 */
export function form({ fields, submit, onSubmit, keep = false, label }) {
  const controls = {};
  const rows = fields.map((f) => {
    const control = makeControl(f);
    controls[f.name] = control;
    if (f.type === 'args') {
      return h('div', { class: 'field' }, h('span', { class: 'label' }, f.label), h('div', { class: 'control' }, control.el));
    }
    const id = `f${++serial}`;
    control.el.id = id;
    return h('div', { class: 'field' },
      h('label', { for: id }, f.label),
      h('div', { class: 'control' }, control.el, f.help && h('small', {}, f.help)));
  });
  const el = h('form', { class: 'form', 'aria-label': label }, rows,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, submit)));
  el.addEventListener('submit', async (event) => {
    event.preventDefault();
    const values = {};
    const ok = await attempt(async () => {
      for (const [name, control] of Object.entries(controls)) values[name] = control.read();
      await onSubmit(values);
    });
    if (ok && !keep) {
      el.reset();
      for (const control of Object.values(controls)) control.reset?.();
    }
  });
  el.controls = controls;
  return el;
}

function makeControl(f) {
  const type = f.type ?? 'text';
  if (type === 'args') return argsEditor(f.label, f.hints ?? [], f.types ?? ['String', 'Number', 'Boolean', 'List']);
  let el;
  if (type === 'select') {
    el = h('select', { name: f.name },
      f.options.map((o) => {
        const [value, text] = Array.isArray(o) ? o : [o, o];
        return h('option', { value, selected: String(value) === String(f.value ?? '') }, text);
      }));
  } else if (type === 'textarea') {
    el = h('textarea', { name: f.name, rows: f.rows ?? 4 });
    el.defaultValue = f.value ?? '';
  } else if (type === 'checkbox') {
    el = h('input', { type: 'checkbox', name: f.name });
    el.defaultChecked = Boolean(f.value);
  } else {
    el = h('input', { type, name: f.name, required: f.required, min: f.min, placeholder: f.placeholder });
    el.defaultValue = f.value ?? '';
  }
  return {
    el,
    read() {
      if (type === 'checkbox') return el.checked;
      if (type === 'number') return el.value === '' ? undefined : Number(el.value);
      return el.value;
    },
  };
}

/** Parse a value typed as `type` (String, Number, Boolean, List). */
export function typed(value, type) {
  if (type === 'Number') {
    const n = Number(value);
    if (value.trim() === '' || Number.isNaN(n)) throw new Error(`Not a number: ${value}`);
    return n;
  }
  if (type === 'Boolean') return value === 'true';
  if (type === 'List') {
    try {
      const parsed = JSON.parse(value);
      if (Array.isArray(parsed)) return parsed;
    } catch {
      // not JSON: comma-separated
    }
    return value.split(',').map((v) => v.trim()).filter((v) => v);
  }
  return value;
}

/** Key = value rows with a type; a new row appears when the last is used. */
export function argsEditor(legend, hints = [], types = ['String']) {
  const rows = h('div', { class: 'args-rows' });
  const addRow = () => {
    const i = rows.children.length + 1;
    const key = h('input', { 'aria-label': `${legend} key ${i}`, class: 'arg-key' });
    const value = h('input', { 'aria-label': `${legend} value ${i}`, class: 'arg-value' });
    const type = h('select', { 'aria-label': `${legend} type ${i}`, hidden: types.length < 2 },
      types.map((t) => h('option', { value: t }, t)));
    const row = h('div', { class: 'arg-row' }, key, ' = ', value, ' ', type);
    const grow = () => {
      if (row === rows.lastElementChild && (key.value || value.value)) addRow();
    };
    key.addEventListener('input', grow);
    value.addEventListener('input', grow);
    rows.append(row);
    return row;
  };
  const hint = ([name, type]) => h('button', {
    type: 'button', class: 'hint', onclick: () => {
      let row = [...rows.children].find((r) => !r.querySelector('.arg-key').value);
      if (!row) row = addRow();
      row.querySelector('.arg-key').value = name;
      row.querySelector('select').value = type;
      addRow();
      row.querySelector('.arg-value').focus();
    },
  }, name);
  addRow();
  const el = h('div', { class: 'args', role: 'group', 'aria-label': legend }, rows,
    hints.length ? h('div', { class: 'hints' }, 'Add: ', hints.map(hint)) : null);
  return {
    el,
    read() {
      const out = {};
      for (const row of rows.children) {
        const key = row.querySelector('.arg-key').value.trim();
        if (!key) continue;
        out[key] = typed(row.querySelector('.arg-value').value, row.querySelector('select').value);
      }
      return out;
    },
    reset() {
      rows.replaceChildren();
      addRow();
    },
  };
}

/** A "Delete" style button that asks before running `action` (async). */
export function confirmButton(text, question, action) {
  return h('button', {
    type: 'button', class: 'danger', onclick: async () => {
      if (window.confirm(question)) await attempt(action);
    },
  }, text);
}
