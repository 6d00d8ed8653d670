// The audit trail: one event per committed change, newest first, a page at a time.

import {AUDIT, call} from './api.js';
import {field, h, replace, table} from './dom.js';
import {explainFailure} from './sources.js';

function json(value) {
  return value === null || value === undefined ? '—' : JSON.stringify(value, null, 2);
}

export async function render(view) {
  const messages = h('div', {class: 'messages'});
  const body = h('div');
  const more = h('div', {class: 'actions'});
  const entity = field('Entity id', h('input', {name: 'entity', id: 'audit-entity', autocomplete: 'off', spellcheck: 'false'}));
  const actor = field('Actor', h('input', {name: 'actor', id: 'audit-actor', autocomplete: 'off', spellcheck: 'false'}));
  let tbody = null;

  const row = (event) => {
    const a = event.attributes;
    return h('tr', {dataset: {operation: a.operation, entity: a.entityId}},
      h('td', {class: 'mono', text: a.time}),
      h('td', {text: a.actor}),
      h('td', {class: 'mono', text: a.clientIp ?? 'unknown'}),
      h('td', {}, h('span', {text: a.operation}), a.forced ? h('span', {class: 'badge denied', text: 'forced'}) : null),
      h('td', {}, h('span', {class: 'muted', text: `${a.entityType} `}), h('span', {class: 'mono', text: a.entityId})),
      h('td', {}, h('details', {}, h('summary', {text: `version ${a.versionBefore} \u2192 ${a.versionAfter}`}),
        h('p', {text: 'Before'}), h('pre', {class: 'mono', text: json(a.before)}),
        h('p', {text: 'After'}), h('pre', {class: 'mono', text: json(a.after)}))));
  };

  const load = async (path, append) => {
    try {
      const page = (await call('GET', path)).body;
      replace(messages);
      if (!append || !tbody) {
        const rows = page.data.map(row);
        replace(body, table('Audit events', ['Time (UTC)', 'Actor', 'From', 'Operation', 'Entity', 'Change'], rows,
          'No changes recorded.'));
        tbody = body.querySelector('tbody');
      } else {
        tbody.append(...page.data.map(row));
      }
      replace(more, page.links?.next
        ? h('button', {type: 'button', id: 'audit-older', onclick: () => load(page.links.next, true)}, 'Older events')
        : null);
    } catch (error) {
      explainFailure(error, {messages, fields: {}});
    }
  };

  const search = () => {
    const query = new URLSearchParams();
    if (entity.control.value.trim()) query.set('filter[entityId]', entity.control.value.trim());
    if (actor.control.value.trim()) query.set('filter[actor]', actor.control.value.trim());
    const text = query.toString();
    tbody = null;
    return load(text ? `${AUDIT}?${text}` : AUDIT, false);
  };

  replace(view, h('h2', {text: 'Audit trail'}),
    h('p', {class: 'hint', text: 'Every change to policies, groups and allowlists, newest first, with who made it and from where.'}),
    h('form', {class: 'toolbar', id: 'audit-form', onsubmit: (event) => { event.preventDefault(); search(); }},
      entity.element, actor.element, h('button', {type: 'submit'}, 'Filter')),
    messages, body, more);
  await search();
}
