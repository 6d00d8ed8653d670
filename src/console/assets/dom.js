// Building the page. Every value from the API reaches the page as text: through
// `textContent`, text nodes or attribute values, never as HTML.

let nextId = 0;

/** A unique id for an element, to tie labels and descriptions to controls. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * An element: `h('button', {type: 'button', onclick: f}, 'Save')`. Children are nodes
 * or strings (inserted as text); `null`, `undefined` and `false` are skipped.
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') element.className = value;
    else if (key === 'text') element.textContent = String(value);
    else if (key === 'value') element.value = String(value);
    else if (key === 'checked') element.checked = Boolean(value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (value === true) element.setAttribute(key, '');
    else element.setAttribute(key, String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces the children of `element`. */
export function replace(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A labelled control: `{element, control, error(text)}`. */
export function field(label, control, hint) {
  control.id = control.id || uid('field');
  const hintElement = hint ? h('p', {class: 'hint', id: uid('hint'), text: hint}) : null;
  const errorElement = h('p', {class: 'field-error', id: uid('error'), hidden: true});
  const described = [hintElement?.id, errorElement.id].filter(Boolean).join(' ');
  control.setAttribute('aria-describedby', described);
  const element = h('div', {class: 'field'}, h('label', {for: control.id, text: label}), control, hintElement, errorElement);
  return {
    element,
    control,
    error(text) {
      errorElement.textContent = text || '';
      errorElement.hidden = !text;
      if (text) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}

/** A select of `[value, label]` options. */
export function select(options, value) {
  return h('select', {}, options.map(([optionValue, label]) =>
    h('option', {value: optionValue, selected: optionValue === value, text: label})));
}

/**
 * A notice: `kind` is `error`, `warning`, `success` or `info`; `actions` are buttons.
 * Errors and warnings are announced (`role=alert`).
 */
export function notice(kind, title, details = [], actions = []) {
  const role = kind === 'error' || kind === 'warning' ? 'alert' : 'status';
  return h('div', {class: `notice ${kind}`, role, dataset: {kind}},
    h('p', {}, h('strong', {text: title})),
    details.filter(Boolean).map((detail) => h('p', {text: detail})),
    actions.length ? h('div', {class: 'actions'}, actions) : null);
}

/** A button. */
export function button(label, onclick, className) {
  return h('button', {type: 'button', class: className, onclick}, label);
}

/** A table in a scrolling wrapper: `headers` are strings, `rows` arrays of cells. */
export function table(caption, headers, rows, empty) {
  if (rows.length === 0) return h('p', {class: 'muted', text: empty});
  return h('div', {class: 'table-wrap', tabindex: '0', role: 'region', 'aria-label': caption},
    h('table', {},
      h('caption', {class: 'sr-only', text: caption}),
      h('thead', {}, h('tr', {}, headers.map((header) => h('th', {scope: 'col', text: header})))),
      h('tbody', {}, rows)));
}

/** A bulleted list of strings, or a dash when empty. */
export function list(items, className) {
  if (!items || items.length === 0) return h('span', {class: 'muted', text: '—'});
  return h('ul', {class: className}, items.map((item) => h('li', {text: item})));
}

/** A short message in the live region, cleared after a while. */
export function announce(text) {
  const status = document.getElementById('status');
  const message = h('p', {text});
  replace(status, message);
  setTimeout(() => { if (message.isConnected) message.remove(); }, 5000);
}
