// Policies: the table, the editor (sources one per line), targets, deletion.

import {ACTIONS, POLICIES, call, segment} from './api.js';
import {announce, button, field, h, list, notice, replace, select, table} from './dom.js';
import {explainFailure, lines, sourceBox} from './sources.js';
import {wouldDenySection} from './would-deny.js';

const ENFORCEMENT = [['enforce', 'Enforce: refuse other addresses'], ['report', 'Report only: log what it would refuse']];

function targetsOf(policy) {
  return {
    users: (policy.relationships?.users?.data || []).map((one) => one.id),
    groups: (policy.relationships?.userGroups?.data || []).map((one) => one.id),
  };
}

/** `inactive` (no targets), `enforce` or `report`. */
export function stateOf(policy) {
  const {users, groups} = targetsOf(policy);
  if (users.length === 0 && groups.length === 0) return 'inactive';
  return policy.attributes.enforcement === 'report' ? 'report' : 'enforce';
}

const STATE_LABELS = {inactive: 'inactive', enforce: 'enforce', report: 'report only'};

function stateBadge(state) {
  return h('span', {class: `badge ${state}`, text: STATE_LABELS[state]});
}

/** The list of policies. */
export async function renderList(view) {
  const messages = h('div');
  const body = h('div', {'aria-busy': 'true'}, h('p', {class: 'muted', text: 'Loading policies…'}));
  replace(view,
    h('h2', {text: 'Policies'}),
    h('p', {class: 'hint', text: 'A policy admits its users and the members of its groups (and of their subgroups) only from its sources. A policy with no users or groups is inactive.'}),
    h('div', {class: 'toolbar'}, h('a', {href: '#policies/new', class: 'button-link', id: 'new-policy'}, 'New policy')),
    messages, body);
  let policies;
  try {
    policies = (await call('GET', POLICIES)).body.data;
  } catch (error) {
    body.removeAttribute('aria-busy');
    replace(body);
    explainFailure(error, {messages});
    return;
  }
  body.removeAttribute('aria-busy');
  const rows = policies.map((policy) => policyRow(policy, messages, view));
  replace(body, table('Policies', ['Id', 'Name', 'State', 'Sources', 'Users', 'Groups', 'Actions'], rows,
    'No policies yet: every user may call from any address until one applies to them.'));
}

function policyRow(policy, messages, view) {
  const {users, groups} = targetsOf(policy);
  const attributes = policy.attributes;
  const sources = h('div', {}, list(attributes.allowedSources, 'mono'));
  if (attributes.blockedSources?.length) {
    sources.append(h('p', {class: 'hint', text: 'except'}), list(attributes.blockedSources, 'mono'));
  }
  const actions = h('td', {class: 'row-actions'});
  const showActions = () => replace(actions, h('div', {class: 'actions'},
    h('a', {href: `#policies/edit/${segment(policy.id)}`, 'aria-label': `Edit policy ${policy.id}`}, 'Edit'),
    button('Delete', () => confirmDelete(), 'danger')));
  const confirmDelete = () => {
    const remove = async (force) => {
      try {
        await call('DELETE', `${POLICIES}/${segment(policy.id)}`, {ifMatch: policy.meta?.version, force});
        announce(`Deleted policy ${policy.id}.`);
        await renderList(view);
      } catch (error) {
        explainFailure(error, {messages, force: () => remove(true), reload: () => renderList(view)});
        showActions();
      }
    };
    const yes = button(`Delete ${policy.id}`, () => remove(false), 'danger confirm-delete');
    replace(actions, h('div', {class: 'actions'}, h('span', {text: 'Delete this policy?'}), yes,
      button('Keep it', showActions)));
    yes.focus();
  };
  showActions();
  return h('tr', {dataset: {policy: policy.id}},
    h('td', {class: 'mono', text: policy.id}),
    h('td', {class: 'name', text: attributes.name ?? ''}),
    h('td', {}, stateBadge(stateOf(policy))),
    h('td', {}, sources),
    h('td', {}, list(users)),
    h('td', {}, list(groups)),
    actions);
}

/** The editor: a new policy when `id` is undefined. */
export async function renderEditor(view, id) {
  const isNew = id === undefined;
  const messages = h('div', {class: 'messages'});
  replace(view, h('h2', {text: isNew ? 'New policy' : `Policy ${id}`}), messages);
  let policy = null;
  if (!isNew) {
    try {
      const response = await call('GET', `${POLICIES}/${segment(id)}`);
      policy = response.body.data;
    } catch (error) {
      explainFailure(error, {messages});
      view.append(h('p', {}, h('a', {href: '#policies'}, 'Back to the policies')));
      return;
    }
  }
  const idField = field('Id', h('input', {name: 'id', autocomplete: 'off', spellcheck: 'false', required: true,
    readonly: !isNew, value: id ?? ''}), isNew ? 'Letters, digits, dot, underscore and dash; it cannot be changed later.' : 'Ids cannot be changed.');
  const nameField = field('Name', h('input', {name: 'name', autocomplete: 'off'}), 'Optional, for people.');
  const enforcementField = field('Enforcement', select(ENFORCEMENT, 'enforce'));
  const allowed = sourceBox('Allowed sources', [],
    'One per line: an address (203.0.113.10), a CIDR range (198.51.100.0/24) or a range (203.0.113.1-203.0.113.20).', 'allowedSources');
  const blocked = sourceBox('Blocked sources', [],
    'Optional, one per line: addresses refused even inside the allowed sources.', 'blockedSources');
  const version = h('p', {class: 'hint version'});
  let current = null;
  let targets = null;
  const showVersion = (data) => {
    version.textContent = `Version ${data.meta?.version ?? '?'}; state: ${STATE_LABELS[stateOf(data)]}.`;
  };
  // Everything shown follows the policy as loaded: its would-deny section too, which
  // another change may have turned on or off.
  const fill = (data) => {
    current = data;
    nameField.control.value = data.attributes.name ?? '';
    enforcementField.control.value = data.attributes.enforcement || 'enforce';
    allowed.set(data.attributes.allowedSources);
    blocked.set(data.attributes.blockedSources || []);
    showVersion(data);
    showWouldDeny();
  };
  const reload = async () => {
    try {
      fill((await call('GET', `${POLICIES}/${segment(id)}`)).body.data);
      replace(messages, notice('info', 'Reloaded: this is the current version.'));
      targets?.refresh(current);
    } catch (error) {
      explainFailure(error, {messages});
    }
  };
  // A report-only policy's would-deny summary, below the form; gone once it enforces.
  const wouldDeny = h('div');
  const showWouldDeny = () => {
    if (current?.attributes.enforcement === 'report') {
      replace(wouldDeny, wouldDenySection(`${ACTIONS}/${segment(id)}/wouldDeny`, 'this policy').element);
    } else {
      replace(wouldDeny);
    }
  };
  const fields = {'/data/id': idField, '/data/attributes/name': nameField, '/data/attributes/enforcement': enforcementField};
  const boxes = {allowedSources: allowed, blockedSources: blocked};

  const save = async (force) => {
    const attributes = {
      allowedSources: allowed.values(),
      blockedSources: blocked.values(),
      enforcement: enforcementField.control.value,
    };
    const name = nameField.control.value.trim();
    try {
      if (isNew) {
        if (name) attributes.name = name;
        const newId = idField.control.value.trim();
        await call('POST', POLICIES, {force, body: {data: {id: newId, type: 'ipAllowlistPolicy', attributes}}});
        announce(`Created policy ${newId}.`);
        window.location.hash = `#policies/edit/${segment(newId)}`;
      } else {
        attributes.name = name || null;
        const response = await call('PATCH', `${POLICIES}/${segment(id)}`, {force, ifMatch: current.meta?.version,
          body: {data: {id, type: 'ipAllowlistPolicy', attributes}}});
        fill(response.body.data);
        replace(messages, notice('success', `Saved policy ${id} (version ${response.body.data.meta?.version}).`));
      }
    } catch (error) {
      explainFailure(error, {messages, boxes, fields, force: () => save(true), reload: isNew ? undefined : reload});
    }
  };
  const form = h('form', {class: 'stack', id: 'policy-form', novalidate: true,
    onsubmit: (event) => { event.preventDefault(); save(false); }},
  idField.element, nameField.element, enforcementField.element, allowed.element, blocked.element, version,
  h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', id: 'save-policy'}, isNew ? 'Create policy' : 'Save changes'),
    h('a', {href: '#policies'}, 'Back to the policies')));
  view.append(form);
  if (policy) {
    fill(policy);
    targets = targetsEditor(id, policy, (data) => {
      // Assigning changes the version: keep the form's edits, take the new version.
      current = {...current, meta: data.meta, relationships: data.relationships};
      showVersion(data);
    });
    view.append(targets.element, wouldDeny);
  } else {
    view.append(h('p', {class: 'hint', text: 'Users and groups are assigned once the policy exists.'}));
  }
  (isNew ? idField.control : nameField.control).focus();
}

/** Users and groups of a policy: added and removed one at a time. */
function targetsEditor(id, policy, onChange) {
  const messages = h('div', {class: 'messages'});
  const usersList = h('ul', {class: 'chips', id: 'policy-users', 'aria-label': 'Assigned users'});
  const groupsList = h('ul', {class: 'chips', id: 'policy-groups', 'aria-label': 'Assigned groups'});
  const refresh = (data) => {
    const {users, groups} = targetsOf(data);
    chips(usersList, users, 'user');
    chips(groupsList, groups, 'group');
  };
  const change = async (action, kind, target, force) => {
    const key = kind === 'user' ? 'users' : 'userGroups';
    const body = {data: {[key]: [{id: target, type: kind === 'user' ? 'user' : 'userGroup'}]}};
    try {
      await call('POST', `${ACTIONS}/${segment(id)}/${action}`, {body, force});
      const data = (await call('GET', `${POLICIES}/${segment(id)}`)).body.data;
      refresh(data);
      onChange(data);
      replace(messages);
      announce(`${action === 'addTargets' ? 'Assigned' : 'Unassigned'} ${kind} ${target}.`);
      return true;
    } catch (error) {
      explainFailure(error, {messages, force: () => change(action, kind, target, true)});
      return false;
    }
  };
  const chips = (element, ids, kind) => {
    replace(element, ids.length ? ids.map((target) => h('li', {dataset: {target}},
      h('span', {text: target}),
      button('Remove', () => change('removeTargets', kind, target, false), `remove-${kind}`)))
      : h('li', {class: 'muted', text: 'none'}));
    for (const item of element.querySelectorAll('button')) {
      item.setAttribute('aria-label', `Unassign ${kind} ${item.parentElement.dataset.target}`);
    }
  };
  const adder = (kind, label) => {
    const input = field(label, h('input', {name: `add-${kind}`, id: `add-${kind}`, autocomplete: 'off', spellcheck: 'false'}));
    const form = h('form', {class: 'actions', onsubmit: async (event) => {
      event.preventDefault();
      const names = lines(input.control.value.replaceAll(',', '\n'));
      for (const target of names) {
        if (!(await change('addTargets', kind, target, false))) return;
      }
      input.control.value = '';
    }}, input.element, h('button', {type: 'submit', id: `assign-${kind}`}, `Assign ${kind}`));
    return form;
  };
  refresh(policy);
  const element = h('section', {class: 'targets-section', 'aria-labelledby': 'targets-title'},
    h('h3', {id: 'targets-title', text: 'Assigned to'}),
    h('p', {class: 'hint', text: 'Each assignment takes effect at once. A group covers the members of its subgroups too.'}),
    messages,
    h('div', {class: 'targets'},
      h('div', {}, h('h4', {text: 'Users'}), usersList, adder('user', 'User id')),
      h('div', {}, h('h4', {text: 'Groups'}), groupsList, adder('group', 'Group id'))));
  return {element, refresh};
}

