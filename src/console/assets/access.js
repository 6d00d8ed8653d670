// Check access: `evaluate` for a user, groups and address, and "my access" for the
// signed-in administrator. Both answer with the decision, the rule that decided and
// the chain of groups through which each policy applies.

import {ACTIONS, call} from './api.js';
import {field, h, replace, table} from './dom.js';
import {explainFailure, lines} from './sources.js';

const DECISIONS = {allowed: 'Allowed', denied: 'Denied', noPolicy: 'No policy applies'};
const REASONS = {
  ipNotAllowed: 'no enforced policy that applies admits the address',
  clientIpUnknown: 'the client address is unknown, so nothing can admit it',
};
const SOURCES = {
  peer: 'the TCP peer', proxyProtocol: 'a PROXY protocol header', xForwardedFor: 'X-Forwarded-For',
  forwarded: 'Forwarded', xRealIp: 'X-Real-IP', header: 'a forwarded header',
};

function admits(value) {
  if (value === true) return 'admits';
  if (value === false) return 'refuses';
  return 'unknown address';
}

/** The explanation of a decision, as the API gives it. */
export function explanation(data) {
  const decision = data.decision;
  const parts = [h('p', {class: 'decision'},
    h('span', {class: `badge ${decision}`, id: 'decision', dataset: {decision}, text: DECISIONS[decision] || decision}),
    ' ', h('span', {text: `${data.user} from ${data.clientIp ?? 'an unknown address'}`}))];
  const facts = [];
  if (data.reason) facts.push(`Why: ${REASONS[data.reason] || data.reason}.`);
  if (data.matching) facts.push(h('span', {id: 'matching'}, 'Decided by policy ', h('strong', {text: data.matching.policy}),
    ', source ', h('code', {class: 'mono', text: data.matching.source}), '.'));
  if (decision === 'noPolicy') facts.push('No enforced policy names this user or one of their groups: the allowlist does not restrict them.');
  if (data.withReportOnly && data.withReportOnly !== decision) {
    facts.push(`If the report-only policies were enforced: ${DECISIONS[data.withReportOnly] || data.withReportOnly}.`);
  }
  if (data.siteAllowlist) {
    const site = data.siteAllowlist;
    facts.push(`Site allowlist (${site.enforcement === 'report' ? 'report only' : 'enforced'}): ${admits(site.admits)}` +
      (site.matchingSource ? ` through ${site.matchingSource}` : '') +
      (site.blockingSource ? `, blocked by ${site.blockingSource}` : '') + '.');
  }
  if (data.clientIpSource) {
    let how = `Address read from ${SOURCES[data.clientIpSource] || data.clientIpSource}`;
    if (data.clientIpHeader) how += ` (${data.clientIpHeader}, entry ${data.clientIpHop} from the right)`;
    if (data.clientIpBalancer) how += ` sent by the balancer ${data.clientIpBalancer}`;
    facts.push(`${how}.`);
  }
  if (data.clientIpUnknown) facts.push(`The address is unknown: ${data.clientIpUnknown}`);
  parts.push(h('ul', {class: 'facts'}, facts.map((fact) => h('li', {}, fact))));
  const rows = (data.policies || []).map((policy) => h('tr', {dataset: {policy: policy.id}},
    h('td', {class: 'mono', text: policy.id}),
    h('td', {text: policy.enforcement === 'report' ? 'report only' : 'enforce'}),
    h('td', {class: 'via'}, h('ul', {},
      policy.viaUser ? h('li', {text: 'the user directly'}) : null,
      (policy.viaGroups || []).map((chain) => h('li', {class: 'chain', text: chain.join(' \u2192 ')})))),
    h('td', {text: admits(policy.admits)}),
    h('td', {class: 'mono', text: policy.matchingSource ?? policy.blockingSource ?? '—'})));
  parts.push(h('h3', {text: 'Policies that apply'}),
    table('Policies that apply', ['Policy', 'Enforcement', 'Applies through', 'Address', 'Source'], rows,
      'None: no policy names this user or one of their groups (or their groups\u2019 ancestors).'));
  return h('div', {class: 'explanation', id: 'explanation'}, parts);
}

export async function render(view) {
  const messages = h('div', {class: 'messages'});
  const result = h('div', {'aria-live': 'polite'});
  const user = field('User', h('input', {name: 'user', id: 'evaluate-user', autocomplete: 'off', spellcheck: 'false', required: true}));
  const groups = field('Groups', h('input', {name: 'groups', id: 'evaluate-groups', autocomplete: 'off', spellcheck: 'false'}),
    'The user\u2019s direct groups, separated by commas; their ancestors are found through the hierarchy.');
  const address = field('Address', h('input', {name: 'address', id: 'evaluate-address', autocomplete: 'off', spellcheck: 'false'}),
    'Empty: your own address, as this server sees it.');
  const evaluate = async () => {
    const data = {user: user.control.value.trim(), userGroups: lines(groups.control.value.replaceAll(',', '\n'))};
    const addr = address.control.value.trim();
    if (addr) data.address = addr;
    try {
      const response = await call('POST', `${ACTIONS}/evaluate`, {body: {data}});
      replace(messages);
      replace(result, explanation(response.body.data));
    } catch (error) {
      replace(result);
      explainFailure(error, {messages, fields: {'/data/user': user, '/data/address': address, '/data/userGroups': groups}});
    }
  };
  const mine = async () => {
    try {
      const response = await call('GET', `${ACTIONS}/myAccess`);
      replace(messages);
      replace(result, h('h3', {text: 'My access'}), explanation(response.body.data));
    } catch (error) {
      replace(result);
      explainFailure(error, {messages});
    }
  };
  replace(view, h('h2', {text: 'Check access'}),
    h('p', {class: 'hint', text: 'Would this user, with these groups, be allowed from this address? Nothing is changed.'}),
    h('form', {class: 'stack', id: 'evaluate-form', novalidate: true,
      onsubmit: (event) => { event.preventDefault(); evaluate(); }},
    user.element, groups.element, address.element,
    h('div', {class: 'actions'}, h('button', {type: 'submit', class: 'primary', id: 'evaluate'}, 'Evaluate'),
      h('button', {type: 'button', id: 'my-access', onclick: mine}, 'My access'))),
    messages, result);
}
