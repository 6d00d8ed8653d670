// The group hierarchy: a tree from the groups without parents down, and an editor of
// one group's parents. The API refuses cycles; its message is shown as it is.

import {GROUPS, POLICIES, call, segment} from './api.js';
import {announce, button, field, h, notice, replace} from './dom.js';
import {explainFailure, lines} from './sources.js';

export async function render(view) {
  const messages = h('div', {class: 'messages'});
  const treeHolder = h('div', {id: 'group-tree'}, h('p', {class: 'muted', text: 'Loading groups…'}));
  const editorHolder = h('div');
  replace(view,
    h('h2', {text: 'Groups'}),
    h('p', {class: 'hint', text: 'Members of a group are members of its parents too: a policy assigned to a group covers its subgroups. Groups come from the tokens; here you only say which group sits under which.'}),
    messages,
    h('div', {class: 'columns'},
      h('section', {'aria-labelledby': 'tree-title'}, h('h3', {id: 'tree-title', text: 'Hierarchy'}), treeHolder),
      h('section', {'aria-labelledby': 'group-editor-title'}, h('h3', {id: 'group-editor-title', text: 'Edit a group\u2019s parents'}), editorHolder)));

  let parentsOf = new Map();
  let policiesOf = new Map();
  const load = async () => {
    const [groups, policies] = await Promise.all([call('GET', GROUPS), call('GET', POLICIES)]);
    parentsOf = new Map(groups.body.data.map((group) =>
      [group.id, (group.relationships?.parents?.data || []).map((parent) => parent.id)]));
    policiesOf = new Map();
    for (const policy of policies.body.data) {
      for (const group of policy.relationships?.userGroups?.data || []) {
        if (!policiesOf.has(group.id)) policiesOf.set(group.id, []);
        policiesOf.get(group.id).push(policy.id);
      }
    }
    drawTree();
  };

  const drawTree = () => {
    const all = new Set([...parentsOf.keys(), ...policiesOf.keys()]);
    const children = new Map();
    for (const [child, parents] of parentsOf) {
      for (const parent of parents) {
        all.add(parent);
        if (!children.has(parent)) children.set(parent, []);
        children.get(parent).push(child);
      }
    }
    if (all.size === 0) {
      replace(treeHolder, h('p', {class: 'muted', text: 'No groups yet: none has parents and no policy names one.'}));
      return;
    }
    const roots = [...all].filter((group) => !(parentsOf.get(group)?.length)).sort();
    const node = (group, path) => {
      const policies = policiesOf.get(group) || [];
      const item = h('li', {dataset: {group}},
        button(group, () => edit(group), 'link group-name'),
        policies.length ? h('span', {class: 'hint', text: ` policies: ${policies.join(', ')}`}) : null);
      const below = (children.get(group) || []).slice().sort().filter((child) => !path.has(child));
      if (below.length) {
        const next = new Set(path).add(group);
        item.append(h('ul', {}, below.map((child) => node(child, next))));
      }
      return item;
    };
    replace(treeHolder, h('ul', {class: 'tree'}, roots.map((root) => node(root, new Set([root])))));
  };

  const edit = (group) => {
    const idField = field('Group', h('input', {name: 'group', id: 'group-id', autocomplete: 'off', spellcheck: 'false', value: group || ''}));
    const parents = h('textarea', {id: 'group-parents', name: 'parents', rows: 4, spellcheck: 'false'});
    parents.value = (parentsOf.get(group) || []).join('\n');
    const parentsField = field('Parents', parents, 'One group per line; empty: no parents.');
    const formMessages = h('div', {class: 'messages'});
    const save = async (force) => {
      const id = idField.control.value.trim();
      if (!id) {
        idField.error('Name the group.');
        return;
      }
      idField.error('');
      const wanted = lines(parents.value);
      try {
        if (wanted.length === 0) {
          if (parentsOf.has(id)) await call('DELETE', `${GROUPS}/${segment(id)}`, {force});
        } else {
          await call('PUT', `${GROUPS}/${segment(id)}`, {force, body: {data: {id, type: 'userGroup',
            relationships: {parents: {data: wanted.map((parent) => ({id: parent, type: 'userGroup'}))}}}}});
        }
        replace(formMessages, notice('success', `Saved the parents of ${id}.`));
        announce(`Saved the parents of ${id}.`);
        await load();
      } catch (error) {
        explainFailure(error, {messages: formMessages, force: () => save(true),
          fields: {'/data/id': idField}});
      }
    };
    replace(editorHolder, h('form', {class: 'stack', id: 'group-form', novalidate: true,
      onsubmit: (event) => { event.preventDefault(); save(false); }},
    idField.element, parentsField.element, formMessages,
    h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', id: 'save-group'}, 'Save parents'),
      group ? null : h('span', {class: 'hint', text: 'Or pick a group in the tree.'}))));
    (group ? parents : idField.control).focus();
  };

  try {
    await load();
  } catch (error) {
    replace(treeHolder);
    explainFailure(error, {messages});
    return;
  }
  edit('');
  // Opening the page puts focus in the editor's first field; keep it at the top instead.
  view.closest('main')?.focus();
}
