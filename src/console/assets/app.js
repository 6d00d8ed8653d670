// The console's entry point: sign-in, navigation between the sections, and the
// sign-out. Sections render themselves into #view from the admin API.

import {ACTIONS, POLICIES, ApiError, call, mintDevelopmentToken, savedToken, setToken} from './api.js';
import * as access from './access.js';
import * as audit from './audit.js';
import {notice, replace} from './dom.js';
import * as groups from './groups.js';
import * as lists from './lists.js';
import * as policies from './policies.js';

const $ = (id) => document.getElementById(id);

/** Sections by the first part of the location's hash. */
const ROUTES = {
  policies: (view, rest) => {
    if (rest[0] === 'new') return policies.renderEditor(view, undefined);
    if (rest[0] === 'edit' && rest[1] !== undefined) return policies.renderEditor(view, rest[1]);
    return policies.renderList(view);
  },
  groups: (view) => groups.render(view),
  site: (view) => lists.renderSite(view),
  resources: (view, rest) => lists.renderResources(view, rest[0] === 'edit' ? rest[1] : undefined),
  access: (view) => access.render(view),
  audit: (view) => audit.render(view),
};

let signedIn = false;

function route() {
  if (!signedIn) return;
  const [name, ...rest] = window.location.hash.replace(/^#/, '').split('/').map((part) => {
    try { return decodeURIComponent(part); } catch { return part; }
  });
  const section = ROUTES[name] ? name : 'policies';
  for (const link of document.querySelectorAll('nav a')) {
    if (link.getAttribute('href') === `#${section}`) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  const view = $('view');
  view.dataset.section = section;
  const rendering = ROUTES[section](view, rest);
  Promise.resolve(rendering).catch((error) => {
    view.append(notice('error', 'The console failed to show this section', [String(error)]));
  });
}

function showSignIn(message) {
  signedIn = false;
  $('who').hidden = true;
  $('nav').hidden = true;
  replace($('view'));
  $('sign-in').hidden = false;
  replace($('sign-in-message'), message || null);
  $('token').value = '';
  $('token').focus();
}

/**
 * Signs in with the token in hand: the policies must be readable (the manage
 * permission, from an allowed address) and `myAccess` names the user.
 */
async function signIn(token) {
  setToken(token);
  let user;
  try {
    await call('GET', POLICIES);
    user = (await call('GET', `${ACTIONS}/myAccess`)).body.data.user;
  } catch (error) {
    setToken(null);
    const details = error instanceof ApiError ? error.errors.map((one) => one.detail || one.title) : [String(error)];
    const title = error instanceof ApiError && error.status === 403
      ? 'This token may not manage the allowlist'
      : 'Sign-in failed';
    showSignIn(notice('error', title, details));
    return;
  }
  signedIn = true;
  $('sign-in').hidden = true;
  $('who-user').textContent = user;
  $('who').hidden = false;
  $('nav').hidden = false;
  route();
  $('main').focus();
}

function signOut() {
  setToken(null);
  if (window.location.hash) history.replaceState(null, '', window.location.pathname);
  showSignIn(notice('info', 'Signed out.'));
}

async function start() {
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
    if (token) signIn(token);
  });
  $('sign-out').addEventListener('click', signOut);
  window.addEventListener('console:sign-out', signOut);
  window.addEventListener('hashchange', route);
  let config = {};
  try {
    const response = await fetch('config.json', {credentials: 'omit', cache: 'no-store'});
    if (response.ok) config = await response.json();
  } catch {
    config = {};
  }
  if (typeof config.devTokenUrl === 'string') {
    const form = $('dev-form');
    form.hidden = false;
    form.addEventListener('submit', async (event) => {
      event.preventDefault();
      const user = $('dev-user').value.trim();
      if (!user) return;
      try {
        await signIn(await mintDevelopmentToken(config.devTokenUrl, user));
      } catch (error) {
        showSignIn(notice('error', 'No development token', [error.message]));
      }
    });
  }
  // A reload of a signed-in tab: check its token again.
  if (savedToken()) await signIn(savedToken());
  else showSignIn();
}

start();
