// Source lists edited as text, one source per line, and the API's refusals shown
// where they belong: on the line of the source, under the field, or above the form.

import {ApiError} from './api.js';
import {announce, button, h, notice, replace, uid} from './dom.js';

/** The fix the API suggests in an error's detail: "did you mean `198.51.100.0/24`?". */
export function suggestionOf(detail) {
  const match = /did you mean `([^`]+)`/.exec(detail || '');
  return match ? match[1] : null;
}

/** The lines of a text box that are not blank, trimmed. */
export function lines(text) {
  return text.split('\n').map((line) => line.trim()).filter(Boolean);
}

/**
 * A text box of sources, one per line. `values()` reads them (blank lines skipped)
 * and remembers which line each came from, so that `show(i, error)` can put the API's
 * error about the i-th source sent on its line, with its suggested fix as a button.
 */
export function sourceBox(label, values, hint, name) {
  const textarea = h('textarea', {id: uid('sources'), name, spellcheck: 'false',
    autocomplete: 'off', autocapitalize: 'off', rows: 6});
  textarea.value = (values || []).join('\n');
  const hintElement = h('p', {class: 'hint', id: uid('hint'), text: hint});
  const errors = h('ul', {class: 'line-errors', id: uid('line-errors')});
  textarea.setAttribute('aria-describedby', `${hintElement.id} ${errors.id}`);
  const element = h('div', {class: 'field', dataset: {sources: name}},
    h('label', {for: textarea.id, text: label}), hintElement, textarea, errors);
  let lineOf = [];

  const settle = () => {
    if (errors.children.length === 0) textarea.removeAttribute('aria-invalid');
  };

  return {
    element,
    textarea,
    values() {
      lineOf = [];
      const sources = [];
      textarea.value.split('\n').forEach((line, index) => {
        const source = line.trim();
        if (source) {
          sources.push(source);
          lineOf.push(index);
        }
      });
      return sources;
    },
    set(sources) {
      textarea.value = (sources || []).join('\n');
      errors.replaceChildren();
      settle();
    },
    clear() {
      errors.replaceChildren();
      settle();
    },
    /** Shows `error` about the `index`-th source sent (`null`: about the whole list). */
    show(index, error) {
      const lineIndex = index === null ? undefined : lineOf[index];
      const detail = error.detail || error.title || error.code;
      textarea.setAttribute('aria-invalid', 'true');
      if (lineIndex === undefined) {
        errors.append(h('li', {dataset: {code: error.code}}, h('span', {class: 'detail', text: detail})));
        return;
      }
      const original = textarea.value.split('\n')[lineIndex].trim();
      const suggestion = suggestionOf(detail);
      const item = h('li', {dataset: {line: String(lineIndex + 1), code: error.code}},
        h('span', {class: 'line', text: `Line ${lineIndex + 1}: `}),
        h('code', {class: 'mono', text: original}), ' ',
        h('span', {class: 'detail', text: detail}));
      if (suggestion) {
        item.append(' ', button(`Use ${suggestion}`, () => {
          const all = textarea.value.split('\n');
          if (all[lineIndex] !== undefined && all[lineIndex].trim() === original) {
            all[lineIndex] = all[lineIndex].replace(original, suggestion);
            textarea.value = all.join('\n');
          }
          item.remove();
          settle();
          textarea.focus();
          announce(`Line ${lineIndex + 1} is now ${suggestion}.`);
        }, 'apply-suggestion'));
      }
      errors.append(item);
    },
  };
}

/**
 * Explains a failed call in a form. `messages` holds what belongs to no field; `boxes`
 * maps attribute names (`allowedSources`) to source boxes and `fields` JSON pointers to
 * fields. `force` (a function) turns a guard's 409 (`lockoutPrevented`, or
 * `wouldDenyCallers` when enforcing a report-only rule) into a warning with an
 * "Apply anyway" step; `reload` turns a 412 into an explanation with a reload offer.
 */
export function explainFailure(error, options) {
  explain(error, options);
  // Bring the explanation into view: it may be below the fold of a long form.
  const shown = options.messages.querySelector('.notice');
  if (shown && typeof shown.scrollIntoView === 'function') shown.scrollIntoView({block: 'nearest'});
}

// The 409s a change may be applied through anyway (`?force=true`), once warned.
const GUARDS = {
  lockoutPrevented: {
    title: 'This change would lock you out',
    consequence: 'Applied anyway, it takes effect at once: your next request from this address may be refused, and only another administrator (or a change from an allowed address) can undo it.',
  },
  wouldDenyCallers: {
    title: 'Enforcing this would refuse callers it only reported',
    consequence: 'Applied anyway, it takes effect at once: the callers listed under \u201cWould deny\u201d are refused from their next request.',
  },
};

function explain(error, {messages, boxes = {}, fields = {}, force, reload}) {
  for (const box of Object.values(boxes)) box.clear();
  for (const one of Object.values(fields)) one.error('');
  replace(messages);
  if (!(error instanceof ApiError)) {
    messages.append(notice('error', 'Something went wrong in the console', [String(error)]));
    return;
  }
  const first = error.errors[0] || {};
  if (error.status === 401) {
    messages.append(notice('error', 'Your token was refused', [first.detail, 'Sign in again with a valid token.'],
      [button('Sign in again', () => window.dispatchEvent(new Event('console:sign-out')), 'primary')]));
    return;
  }
  const guard = GUARDS[first.code];
  if (guard && force) {
    messages.append(notice('warning', guard.title, [first.detail, guard.consequence],
      [button('Apply anyway', force, 'danger apply-anyway'), button('Cancel', () => replace(messages))]));
    return;
  }
  if (error.status === 412 && reload) {
    messages.append(notice('warning', 'Someone else changed this since you opened it', [first.detail,
      'Nothing was saved. Reload to see the current version, then make your change again: reloading replaces your unsaved edits.'],
    [button('Reload', reload, 'primary reload')]));
    return;
  }
  const general = [];
  for (const one of error.errors) {
    const pointer = one.source?.pointer || '';
    const match = /^\/data\/attributes\/(\w+)(?:\/(\d+))?$/.exec(pointer);
    if (match && boxes[match[1]]) {
      boxes[match[1]].show(match[2] === undefined ? null : Number(match[2]), one);
    } else if (fields[pointer]) {
      fields[pointer].error(one.detail || one.title);
    } else {
      general.push(one);
    }
  }
  const placed = error.errors.length - general.length;
  if (placed > 0) {
    messages.append(notice('error', 'Nothing was saved: fix the field marked below', []));
  }
  for (const one of general) {
    messages.append(notice('error', one.title || 'The server refused the change', [one.detail]));
  }
}
