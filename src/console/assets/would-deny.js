// What a report-only rule (a policy, the site list, a resource list) would have
// refused since it entered report mode: the callers enforcing it would lock out.

import {call} from './api.js';
import {button, h, replace, table} from './dom.js';
import {explainFailure} from './sources.js';

const SCOPES = {
  allReplicas: 'across every replica (others as of their last flush)',
  thisProcess: 'on this server process only',
};

/** A "Would deny" section that loads the summary at `path` (a `.../wouldDeny` route). */
export function wouldDenySection(path, what) {
  const messages = h('div', {class: 'messages'});
  const body = h('div', {class: 'would-deny-body', 'aria-live': 'polite'},
    h('p', {class: 'muted', text: 'Loading…'}));
  const load = async () => {
    try {
      const summary = (await call('GET', path)).body.data.attributes;
      replace(messages);
      replace(body, ...render(summary, what));
    } catch (error) {
      replace(body);
      explainFailure(error, {messages});
    }
  };
  const element = h('section', {class: 'would-deny', id: 'would-deny', 'aria-labelledby': 'would-deny-title'},
    h('h3', {id: 'would-deny-title', text: 'Would deny'}),
    h('p', {class: 'hint', text: `While ${what} only reports, these are the callers it would have refused: enforcing it refuses them.`}),
    h('div', {class: 'actions'}, button('Refresh', load, 'refresh-would-deny')),
    messages, body);
  load();
  return {element, load};
}

function render(summary, what) {
  if (!summary.reportOnly) {
    return [h('p', {class: 'muted', text: `${capitalized(what)} is not in report mode: nothing is summarized.`})];
  }
  const callers = summary.callers.map((caller) => h('tr', {dataset: {user: caller.user ?? '', address: caller.address ?? ''}},
    h('td', {class: caller.user === null ? 'muted' : '', text: caller.user ?? 'anonymous'}),
    h('td', {class: 'mono', text: caller.address ?? 'unknown'}),
    h('td', {class: 'count', text: String(caller.count)}),
    h('td', {class: 'mono', text: caller.firstSeen}),
    h('td', {class: 'mono', text: caller.lastSeen})));
  return [
    h('p', {class: 'would-deny-totals',
      text: `${summary.totalRequests} ${plural(summary.totalRequests, 'request')} would have been refused since ${summary.since ?? '?'}, ${SCOPES[summary.scope] ?? summary.scope}; ${summary.otherRequests} of them from callers not listed.`}),
    h('p', {class: 'hint would-deny-scope', text: `Scope: ${summary.scope}.`}),
    table('Callers it would deny', ['User', 'Address', 'Requests', 'First seen', 'Last seen'], callers,
      'No caller would have been refused yet.'),
  ];
}

function plural(count, word) { return count === 1 ? word : `${word}s`; }

function capitalized(text) { return text.charAt(0).toUpperCase() + text.slice(1); }
