// The site allowlist (every request of the organization) and resource allowlists
// (one resource's requests, such as a project's media).

import {RESOURCES, RESOURCE_ACTIONS, SITE, SITE_ACTIONS, call, segment} from './api.js';
import {announce, button, field, h, list, notice, replace, select, table} from './dom.js';
import {explainFailure, sourceBox} from './sources.js';
import {wouldDenySection} from './would-deny.js';

const ENFORCEMENT = [['enforce', 'Enforce: refuse other addresses'], ['report', 'Report only: log what it would refuse']];
const HINT = 'One per line: an address, a CIDR range or a range first-last.';

/** The site allowlist's editor. */
export async function renderSite(view) {
  const messages = h('div', {class: 'messages'});
  replace(view, h('h2', {text: 'Site allowlist'}),
    h('p', {class: 'hint', text: 'Once enabled, every request of the organization, signed in or not, must come from inside this list: it is checked before any policy.'}),
    messages);
  let site;
  try {
    site = (await call('GET', SITE)).body.data;
  } catch (error) {
    explainFailure(error, {messages});
    return;
  }
  const enabled = h('input', {type: 'checkbox', id: 'site-enabled', name: 'enabled', checked: site.attributes.enabled});
  const enforcement = field('Enforcement', select(ENFORCEMENT, site.attributes.enforcement));
  const allowed = sourceBox('Allowed sources', site.attributes.allowedSources, HINT, 'allowedSources');
  const blocked = sourceBox('Blocked sources', site.attributes.blockedSources || [],
    'Optional, one per line: addresses refused even inside the allowed sources.', 'blockedSources');
  const formMessages = h('div', {class: 'messages'});
  const save = async (force) => {
    const body = {data: {id: 'siteAllowlist', type: 'siteAllowlist', attributes: {
      enabled: enabled.checked,
      allowedSources: allowed.values(),
      blockedSources: blocked.values(),
      enforcement: enforcement.control.value,
    }}};
    try {
      const saved = (await call('PUT', SITE, {body, force})).body.data;
      showWouldDeny(saved);
      replace(formMessages, notice('success', saved.attributes.enabled
        ? 'Saved: the site allowlist is enabled.' : 'Saved: the site allowlist is disabled.'));
      announce('Saved the site allowlist.');
    } catch (error) {
      explainFailure(error, {messages: formMessages, boxes: {allowedSources: allowed, blockedSources: blocked},
        fields: {'/data/attributes/enforcement': enforcement}, force: () => save(true)});
    }
  };
  // While the list reports, whom it would have refused; gone once it enforces.
  const wouldDeny = h('div');
  const showWouldDeny = (data) => {
    if (data.attributes.enabled && data.attributes.enforcement === 'report') {
      replace(wouldDeny, wouldDenySection(`${SITE_ACTIONS}/wouldDeny`, 'the site allowlist').element);
    } else {
      replace(wouldDeny);
    }
  };
  view.append(h('form', {class: 'stack', id: 'site-form', novalidate: true,
    onsubmit: (event) => { event.preventDefault(); save(false); }},
  h('div', {class: 'field inline'}, enabled, h('label', {for: 'site-enabled', text: 'Enabled'})),
  enforcement.element, allowed.element, blocked.element, formMessages,
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', id: 'save-site'}, 'Save the site allowlist'))),
  wouldDeny);
  showWouldDeny(site);
}

/** The resources that have an allowlist, and an editor for one. */
export async function renderResources(view, id) {
  const messages = h('div', {class: 'messages'});
  const body = h('div', {}, h('p', {class: 'muted', text: 'Loading…'}));
  const editor = h('div');
  replace(view, h('h2', {text: 'Resource allowlists'}),
    h('p', {class: 'hint', text: 'A resource with an allowlist (a project\u2019s media, say) is served only to addresses inside it; resources without one are unrestricted.'}),
    h('div', {class: 'toolbar'}, h('a', {href: '#resources/new', class: 'button-link'}, 'New resource allowlist')),
    messages, body, editor);
  let lists;
  try {
    lists = (await call('GET', RESOURCES)).body.data;
  } catch (error) {
    replace(body);
    explainFailure(error, {messages});
    return;
  }
  const row = (one) => {
    const actions = h('td');
    const showActions = () => replace(actions, h('div', {class: 'actions'},
      h('a', {href: `#resources/edit/${segment(one.id)}`, 'aria-label': `Edit the allowlist of ${one.id}`}, 'Edit'),
      button('Delete', () => confirmDelete(), 'danger')));
    const confirmDelete = () => {
      const yes = button(`Remove the allowlist of ${one.id}`, async () => {
        try {
          await call('DELETE', `${RESOURCES}/${segment(one.id)}`);
          announce(`Removed the allowlist of ${one.id}: the resource is unrestricted.`);
          await renderResources(view);
        } catch (error) {
          explainFailure(error, {messages});
          showActions();
        }
      }, 'danger confirm-delete');
      replace(actions, h('div', {class: 'actions'},
        h('span', {text: 'Unrestrict this resource?'}), yes, button('Keep it', showActions)));
      yes.focus();
    };
    showActions();
    return h('tr', {dataset: {resource: one.id}},
      h('td', {class: 'mono', text: one.id}),
      h('td', {}, h('span', {class: `badge ${one.attributes.enforcement}`, text: one.attributes.enforcement === 'report' ? 'report only' : 'enforce'})),
      h('td', {}, list(one.attributes.allowedSources, 'mono')),
      h('td', {}, list(one.attributes.blockedSources || [], 'mono')),
      actions);
  };
  const rows = lists.map(row);
  replace(body, table('Resource allowlists', ['Resource', 'Enforcement', 'Allowed', 'Blocked', 'Actions'], rows,
    'No resource has an allowlist.'));
  if (id === undefined && window.location.hash !== '#resources/new') return;
  const existing = lists.find((one) => one.id === id);
  const idField = field('Resource id', h('input', {name: 'resource', autocomplete: 'off', spellcheck: 'false',
    readonly: existing !== undefined, value: id ?? ''}));
  const enforcement = field('Enforcement', select(ENFORCEMENT, existing?.attributes.enforcement || 'enforce'));
  const allowed = sourceBox('Allowed sources', existing?.attributes.allowedSources || [], HINT, 'allowedSources');
  const blocked = sourceBox('Blocked sources', existing?.attributes.blockedSources || [],
    'Optional, one per line.', 'blockedSources');
  const formMessages = h('div', {class: 'messages'});
  const save = async (force) => {
    const resource = idField.control.value.trim();
    const document = {data: {id: resource, type: 'resourceAllowlist', attributes: {
      allowedSources: allowed.values(), blockedSources: blocked.values(), enforcement: enforcement.control.value}}};
    try {
      await call('PUT', `${RESOURCES}/${segment(resource)}`, {body: document, force});
      announce(`Saved the allowlist of ${resource}.`);
      window.location.hash = '#resources';
    } catch (error) {
      explainFailure(error, {messages: formMessages, boxes: {allowedSources: allowed, blockedSources: blocked},
        fields: {'/data/id': idField, '/data/attributes/enforcement': enforcement}, force: () => save(true)});
    }
  };
  replace(editor, h('h3', {text: existing ? `Allowlist of ${existing.id}` : 'New resource allowlist'}),
    h('form', {class: 'stack', id: 'resource-form', novalidate: true,
      onsubmit: (event) => { event.preventDefault(); save(false); }},
    idField.element, enforcement.element, allowed.element, blocked.element, formMessages,
    h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary'}, 'Save'),
      h('a', {href: '#resources'}, 'Cancel'))),
    existing?.attributes.enforcement === 'report'
      ? wouldDenySection(`${RESOURCE_ACTIONS}/${segment(existing.id)}/wouldDeny`, `the allowlist of ${existing.id}`).element
      : null);
  (existing ? enforcement.control : idField.control).focus();
}
