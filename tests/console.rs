//! The administrator's console end to end: Debian's `chromium`, headless, driven over
//! WebDriver (`chromedriver`) against the demo server on loopback in its development
//! mode. Each scenario signs in, works through the page as an administrator would,
//! and checks the outcome on the admin API or on a gated route.
//!
//! The browser runs when `chromedriver` and `chromium` are installed (always in CI:
//! `.ci/run` installs Debian's `chromium` and `chromium-driver`); elsewhere the tests
//! say they were skipped. `ALLOWLIST_TEST_CHROMEDRIVER` and `ALLOWLIST_TEST_CHROMIUM`
//! name other binaries. A failing scenario leaves a screenshot of the page in
//! `target/tmp/console-screenshots/<test>.png`.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::demo;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use http::{Method, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tower_ip_allowlist::jwt::{encode_hs256, TokenClaims};

/// The demo server's published development secret: its development mode mints tokens
/// with it, and so do these tests for the API calls they check with.
const DEV_SECRET: &str = "tower-ip-allowlist-development-secret-do-not-deploy";

/// How long a page may take to show what a step waits for.
const PATIENCE: Duration = Duration::from_secs(15);

/// One browser at a time: each is a few processes, and the machine may be small. (An
/// async mutex: each test has its own runtime, and the guard is held across awaits.)
static BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ---- the harness ---------------------------------------------------------------------

/// chromedriver on a free loopback port, killed when dropped.
struct Chromedriver {
    child: Child,
    port: u16,
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runs(path: &Path) -> bool {
    Command::new(path)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// The first of `env`, then `name` on `PATH`, then `fallback`, that runs: an absolute
/// path (chromedriver wants one for the browser).
fn binary(env: &str, name: &str, fallback: &str) -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    std::env::var_os(env)
        .map(PathBuf::from)
        .into_iter()
        .chain(on_path)
        .chain([PathBuf::from(fallback)])
        .find(|path| path.is_file() && runs(path))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_chromedriver(binary: &Path) -> Chromedriver {
    // The free port can be taken between our probe and chromedriver's bind (the other
    // tests start demo servers meanwhile): chromedriver then exits, and we try another.
    for _ in 0..5 {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver does not start");
        let mut driver = Chromedriver { child, port };
        let deadline = Instant::now() + PATIENCE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return driver;
            }
            if driver.child.try_wait().ok().flatten().is_some() {
                break; // exited: most likely the port was taken
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    panic!("chromedriver exited at once five times: is the port range exhausted?");
}

/// Attempts at opening a browser session before the test fails: on a loaded machine,
/// chromedriver has reset the connection of a first session request (CI saw it once),
/// which says nothing about the console.
const SESSION_ATTEMPTS: u32 = 3;

/// A headless chromium session through a chromedriver of its own, with its own
/// profile directory; tried again with a new chromedriver and profile when it fails.
async fn open_session(
    driver: &Path,
    chromium: &Path,
    name: &str,
    window: (u32, u32),
) -> (Chromedriver, Client, PathBuf) {
    let mut attempt = 1;
    loop {
        let chromedriver = start_chromedriver(driver).await;
        let profile = std::env::temp_dir().join(format!(
            "allowlist-console-{}-{name}-{attempt}",
            std::process::id()
        ));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--no-first-run", "--no-default-browser-check", "--disable-extensions",
                    "--disable-background-networking", "--disable-sync", "--disable-component-update",
                    format!("--window-size={},{}", window.0, window.1),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", chromedriver.port))
            .await
        {
            Ok(client) => return (chromedriver, client, profile),
            Err(err) if attempt < SESSION_ATTEMPTS => {
                eprintln!("{name}: opening a chromium session failed ({err}); trying again with a new chromedriver");
                drop(chromedriver);
                let _ = std::fs::remove_dir_all(&profile);
                attempt += 1;
            }
            Err(err) => {
                let _ = std::fs::remove_dir_all(&profile);
                panic!(
                    "cannot open a chromium session through chromedriver ({SESSION_ATTEMPTS} attempts): {err}"
                )
            }
        }
    }
}

/// What a scenario gets: the browser and the demo server's address.
#[derive(Clone)]
struct Page {
    client: Client,
    addr: SocketAddr,
}

/// Runs `scenario` in a fresh headless browser against a fresh demo server (in
/// memory, development mode). On failure, saves a screenshot and fails the test.
async fn run<F, Fut>(name: &str, window: (u32, u32), scenario: F)
where
    F: FnOnce(Page) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (Some(driver), Some(chromium)) = (
        binary(
            "ALLOWLIST_TEST_CHROMEDRIVER",
            "chromedriver",
            "/usr/bin/chromedriver",
        ),
        binary("ALLOWLIST_TEST_CHROMIUM", "chromium", "/usr/bin/chromium"),
    ) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium or chromedriver is missing, and CI must run this test: install Debian's `chromium` and `chromium-driver`"
        );
        eprintln!("SKIPPED {name}: chromium or chromedriver is missing (apt-get install chromium chromium-driver)");
        return;
    };
    let _one_at_a_time = BROWSER.lock().await;
    // No `ALLOWLIST_JWT_SECRET`: the demo runs in development mode, with the button.
    let server = demo::start_with("memory", "", &[]);
    let (driver, client, profile) = open_session(&driver, &chromium, name, window).await;
    let page = Page {
        client: client.clone(),
        addr: server.addr,
    };
    // A task, so that a failed assertion inside the scenario still leaves the browser
    // here to take the screenshot with.
    let outcome = tokio::spawn(scenario(page)).await;
    if let Err(failure) = outcome {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("console-screenshots")
            .join(format!("{name}.png"));
        let saved = match client.screenshot().await {
            Ok(png) => std::fs::create_dir_all(path.parent().unwrap())
                .and_then(|()| std::fs::write(&path, png))
                .map(|()| format!("screenshot: {}", path.display()))
                .unwrap_or_else(|err| format!("the screenshot could not be saved: {err}")),
            Err(err) => format!("no screenshot: {err}"),
        };
        let _ = client.close().await;
        let _ = std::fs::remove_dir_all(&profile);
        let message = match failure.try_into_panic() {
            Ok(payload) => match payload.downcast::<String>() {
                Ok(text) => *text,
                Err(payload) => payload.downcast_ref::<&str>().map_or_else(
                    || "the scenario panicked".to_owned(),
                    |text| (*text).to_owned(),
                ),
            },
            Err(err) => err.to_string(),
        };
        panic!("{name} failed: {message}\n{saved}");
    }
    let _ = client.close().await;
    let _ = std::fs::remove_dir_all(&profile);
    drop(driver);
    drop(server);
}

// ---- steps ---------------------------------------------------------------------------

impl Page {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn open(&self, path: &str) {
        self.client.goto(&self.url(path)).await.unwrap();
    }

    /// The element `css` once it is on the page.
    async fn find(&self, css: &str) -> Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .every(Duration::from_millis(25))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|err| panic!("no `{css}` on the page: {err}"))
    }

    /// Waits until `css` is on the page with `text` in its text; returns its text.
    async fn text(&self, css: &str, text: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        let mut last = String::new();
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await {
                if let Ok(shown) = element.text().await {
                    if shown.contains(text) {
                        return shown;
                    }
                    last = shown;
                }
            }
            assert!(
                Instant::now() < deadline,
                "`{css}` never showed `{text}`; last shown: `{last}`"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits until no element matches `css`.
    async fn gone(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        while !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "`{css}` is still on the page");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Clicks `css` once it can be clicked: an element found while the page is still
    /// rendering (replaced, covered by a notice, not yet shown) is looked up and
    /// clicked again until [`PATIENCE`] runs out, as a person would.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let error = match self.find(css).await.click().await {
                Ok(()) => return,
                Err(error) => error,
            };
            assert!(Instant::now() < deadline, "cannot click `{css}`: {error}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Replaces the value of the field `css` with `text`.
    async fn fill(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn script(&self, script: &str) -> Value {
        self.client.execute(script, Vec::new()).await.unwrap()
    }

    /// Signs in with the development button as `user`, and waits for the policies.
    async fn sign_in(&self, user: &str) {
        self.open("/console/").await;
        self.fill("#dev-user", user).await;
        self.click("#dev-mint").await;
        self.text("#who-user", user).await;
        self.find("#view[data-section=policies] .toolbar").await;
    }

    /// A call to the API as an administrator (`admin`) from loopback.
    async fn api(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let token = token("admin", &["MANAGE"], &[]);
        demo::send(self.addr, method, path, Some(&token), body).await
    }
}

fn token(user: &str, permissions: &[&str], groups: &[&str]) -> String {
    let claims = TokenClaims::new(user, Duration::from_secs(600))
        .with_permissions(permissions.iter().copied())
        .with_groups(groups.iter().copied());
    encode_hs256(DEV_SECRET.as_bytes(), &claims).unwrap()
}

const POLICIES: &str = "/api/v1/entities/ipAllowlistPolicies";

fn policy(id: &str, name: Option<&str>, sources: &[&str], groups: &[&str]) -> Value {
    let groups: Vec<Value> = groups
        .iter()
        .map(|id| json!({"id": id, "type": "userGroup"}))
        .collect();
    let mut attributes = json!({"allowedSources": sources});
    if let Some(name) = name {
        attributes["name"] = json!(name);
    }
    json!({"data": {"id": id, "type": "ipAllowlistPolicy", "attributes": attributes,
        "relationships": {"userGroups": {"data": groups}}}})
}

// ---- scenarios -----------------------------------------------------------------------

#[tokio::test]
async fn signing_in_with_a_pasted_token_and_with_the_development_button() {
    run("sign_in", (1280, 800), |page| async move {
        page.open("/console/").await;
        assert!(
            !page.find("#nav").await.is_displayed().await.unwrap(),
            "no sections before signing in"
        );

        // A token without the manage permission is refused, with the API's reason.
        let reader = token("mallory", &[], &[]);
        page.fill("#token", &reader).await;
        page.click("#token-form button[type=submit]").await;
        page.text("#sign-in-message .notice.error", "may not manage")
            .await;

        let alice = token("alice", &["MANAGE"], &[]);
        page.fill("#token", &alice).await;
        page.click("#token-form button[type=submit]").await;
        page.text("#who-user", "alice").await;
        page.find("#view[data-section=policies]").await;
        // The token is in the tab's session storage: not in a cookie, not in the URL.
        let url = page.client.current_url().await.unwrap();
        assert!(!url.as_str().contains(&alice), "{url}");
        assert_eq!(page.script("return document.cookie").await, json!(""));
        assert_eq!(
            page.script("return Object.values(sessionStorage)").await,
            json!([alice])
        );
        // Reloading the tab keeps the session.
        page.open("/console/#audit").await;
        page.text("#who-user", "alice").await;
        page.find("#view[data-section=audit]").await;

        page.click("#sign-out").await;
        page.find("#token").await;
        assert_eq!(page.script("return sessionStorage.length").await, json!(0));

        // With the keyboard only: the token field has the focus, Enter signs in.
        assert_eq!(
            page.script("return document.activeElement.id").await,
            json!("token")
        );
        let active = page.client.active_element().await.unwrap();
        active.send_keys(&format!("{alice}\u{E007}")).await.unwrap();
        page.text("#who-user", "alice").await;
        page.click("#sign-out").await;
        page.find("#token").await;

        // The development mode's button mints a token for a named user.
        page.fill("#dev-user", "bob").await;
        page.click("#dev-mint").await;
        page.text("#who-user", "bob").await;
    })
    .await;
}

#[tokio::test]
async fn a_typo_in_the_second_source_is_shown_on_its_line_and_fixed_with_one_click() {
    run("typo_on_its_line", (1280, 800), |page| async move {
        page.sign_in("admin").await;
        page.click("#new-policy").await;
        page.fill("#policy-form input[name=id]", "office").await;
        page.fill("#policy-form input[name=name]", "Head office")
            .await;
        page.fill(
            "#policy-form textarea[name=allowedSources]",
            "203.0.113.10\n198.51.100.7/24",
        )
        .await;
        page.click("#save-policy").await;

        let error = "[data-sources=allowedSources] .line-errors li[data-line='2']";
        let shown = page.text(error, "did you mean").await;
        assert!(shown.contains("Line 2"), "{shown}");
        assert!(shown.contains("198.51.100.7/24"), "{shown}");
        page.gone("[data-sources=allowedSources] .line-errors li[data-line='1']")
            .await;
        page.click(&format!("{error} .apply-suggestion")).await;
        page.gone(error).await;
        assert_eq!(
            page.value("#policy-form textarea[name=allowedSources]")
                .await,
            "203.0.113.10\n198.51.100.0/24"
        );
        page.click("#save-policy").await;
        page.text("#policy-form .version", "Version 1").await;

        let (status, body) = page
            .api(Method::GET, &format!("{POLICIES}/office"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            body["data"]["attributes"]["allowedSources"],
            json!(["203.0.113.10", "198.51.100.0/24"])
        );
        assert_eq!(body["data"]["attributes"]["name"], "Head office");

        page.open("/console/#policies").await;
        page.text("tr[data-policy=office] td.name", "Head office")
            .await;
        page.text("tr[data-policy=office]", "inactive").await;

        // The audit trail shows the change, by whom.
        page.click("nav a[href='#audit']").await;
        page.text(
            "tr[data-operation=createPolicy][data-entity=office]",
            "admin",
        )
        .await;

        // Deleting asks first.
        page.click("nav a[href='#policies']").await;
        page.click("tr[data-policy=office] button.danger").await;
        page.click("tr[data-policy=office] .confirm-delete").await;
        page.gone("tr[data-policy=office]").await;
        let (status, _) = page
            .api(Method::GET, &format!("{POLICIES}/office"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}

#[tokio::test]
async fn a_group_assigned_in_the_console_refuses_its_members_on_the_api() {
    run("group_assignment", (1280, 800), |page| async move {
        let carol = token("carol", &[], &["interns"]);
        let profile = |page: &Page| {
            let (addr, carol) = (page.addr, carol.clone());
            async move {
                demo::send(addr, Method::GET, "/api/v1/profile", Some(&carol), None)
                    .await
                    .0
            }
        };
        page.sign_in("admin").await;

        // interns sits under staff; staff under interns would be a cycle.
        page.click("nav a[href='#groups']").await;
        page.fill("#group-id", "interns").await;
        page.fill("#group-parents", "staff").await;
        page.click("#save-group").await;
        page.find("#group-tree li[data-group=staff] li[data-group=interns]")
            .await;
        page.fill("#group-id", "staff").await;
        page.fill("#group-parents", "interns").await;
        page.click("#save-group").await;
        page.text("#group-form .notice.error", "cycle").await;

        // A policy for staff, from an address carol does not call from.
        page.click("nav a[href='#policies']").await;
        page.click("#new-policy").await;
        page.fill("#policy-form input[name=id]", "vpn").await;
        page.fill(
            "#policy-form textarea[name=allowedSources]",
            "198.51.100.0/24",
        )
        .await;
        page.click("#save-policy").await;
        page.find("#add-group").await;
        assert_eq!(profile(&page).await, StatusCode::OK, "not yet assigned");

        page.fill("#add-group", "staff").await;
        page.click("#assign-group").await;
        page.find("#policy-groups li[data-target=staff]").await;
        assert_eq!(
            profile(&page).await,
            StatusCode::FORBIDDEN,
            "carol is in interns, under staff"
        );

        page.click("#policy-groups li[data-target=staff] .remove-group")
            .await;
        page.gone("#policy-groups li[data-target=staff]").await;
        assert_eq!(profile(&page).await, StatusCode::OK, "unassigned");
    })
    .await;
}

#[tokio::test]
async fn enabling_a_site_list_that_locks_the_administrator_out_warns_first() {
    run("site_lockout", (1280, 800), |page| async move {
        page.sign_in("admin").await;
        page.click("nav a[href='#site']").await;
        page.click("#site-enabled").await;
        page.fill("#site-form textarea[name=allowedSources]", "203.0.113.0/24")
            .await;
        page.click("#save-site").await;
        page.text("#site-form .notice.warning", "lock you out")
            .await;
        let (_, site) = page
            .api(Method::GET, "/api/v1/entities/siteAllowlist", None)
            .await;
        assert_eq!(
            site["data"]["attributes"]["enabled"], false,
            "nothing applied yet"
        );

        page.click("#site-form .apply-anyway").await;
        page.text("#site-form .notice.success", "enabled").await;
        let (status, _) = page.api(Method::GET, "/api/v1/profile", None).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "loopback is outside the site list"
        );
    })
    .await;
}

#[tokio::test]
async fn a_report_only_policy_shows_whom_it_would_deny_and_warns_before_enforcing() {
    run("would_deny", (1280, 800), |page| async move {
        // carol calls from loopback, outside the rollout policy, which only reports.
        let mut rollout = policy("rollout", Some("Rollout"), &["198.51.100.0/24"], &[]);
        rollout["data"]["attributes"]["enforcement"] = json!("report");
        rollout["data"]["relationships"]["users"] =
            json!({"data": [{"id": "carol", "type": "user"}]});
        let (status, body) = page.api(Method::POST, POLICIES, Some(rollout)).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let carol = token("carol", &[], &[]);
        let profile = |page: &Page| {
            let (addr, carol) = (page.addr, carol.clone());
            async move {
                demo::send(addr, Method::GET, "/api/v1/profile", Some(&carol), None)
                    .await
                    .0
            }
        };
        assert_eq!(
            profile(&page).await,
            StatusCode::OK,
            "report only refuses nothing"
        );

        page.sign_in("admin").await;
        page.open("/console/#policies/edit/rollout").await;
        let row = page
            .text("#would-deny tr[data-user=carol]", "127.0.0.1")
            .await;
        // The row's first cell names its caller exactly (not "anonymous"); its count is
        // in a cell of its own.
        let name = page
            .text("#would-deny tr[data-user=carol] td:first-child", "carol")
            .await;
        assert_eq!(name.trim(), "carol", "{row}");
        let count = page
            .text("#would-deny tr[data-user=carol] td.count", "1")
            .await;
        assert_eq!(count.trim(), "1", "{row}");
        page.text(
            "#would-deny .would-deny-totals",
            "1 request would have been refused",
        )
        .await;
        page.text("#would-deny .would-deny-scope", "thisProcess")
            .await;

        page.find("#policy-form select")
            .await
            .select_by_value("enforce")
            .await
            .unwrap();
        page.click("#save-policy").await;
        page.text(".notice.warning", "would refuse callers").await;
        let (_, body) = page
            .api(Method::GET, &format!("{POLICIES}/rollout"), None)
            .await;
        assert_eq!(
            body["data"]["attributes"]["enforcement"], "report",
            "nothing applied yet"
        );
        assert_eq!(profile(&page).await, StatusCode::OK);

        page.click(".notice.warning .apply-anyway").await;
        page.text(".notice.success", "Saved policy rollout").await;
        page.gone("#would-deny").await;
        assert_eq!(profile(&page).await, StatusCode::FORBIDDEN, "enforced");
    })
    .await;
}

#[tokio::test]
async fn evaluating_a_caller_names_the_chain_of_groups_and_the_deciding_rule() {
    run("evaluate", (1280, 800), |page| async move {
        let (status, body) = page
            .api(
                Method::POST,
                POLICIES,
                Some(policy("vpn", None, &["198.51.100.0/24"], &["staff"])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let parents = json!({"data": {"type": "userGroup",
            "relationships": {"parents": {"data": [{"id": "staff", "type": "userGroup"}]}}}});
        let (status, body) = page
            .api(
                Method::PUT,
                "/api/v1/entities/userGroups/interns",
                Some(parents),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        page.sign_in("admin").await;
        page.click("nav a[href='#access']").await;
        page.fill("#evaluate-user", "dave").await;
        page.fill("#evaluate-groups", "interns").await;
        page.fill("#evaluate-address", "198.51.100.7").await;
        page.click("#evaluate").await;
        page.find("#decision[data-decision=allowed]").await;
        let matching = page.text("#matching", "vpn").await;
        assert!(matching.contains("198.51.100.0/24"), "{matching}");
        page.text("tr[data-policy=vpn] .chain", "interns \u{2192} staff")
            .await;

        page.fill("#evaluate-address", "203.0.113.9").await;
        page.click("#evaluate").await;
        page.find("#decision[data-decision=denied]").await;
        page.text("#explanation", "no enforced policy that applies admits")
            .await;

        page.find("#evaluate-groups").await.clear().await.unwrap();
        page.click("#evaluate").await;
        page.find("#decision[data-decision=noPolicy]").await;

        page.click("#my-access").await;
        page.text("#explanation", "admin from 127.0.0.1").await;
        page.find("#decision[data-decision=noPolicy]").await;
    })
    .await;
}

#[tokio::test]
async fn a_hostile_policy_name_is_shown_as_text() {
    let hostile = "<img src=x onerror=alert(1)>";
    run("hostile_name", (1280, 800), move |page| async move {
        let (status, body) = page
            .api(
                Method::POST,
                POLICIES,
                Some(policy("hostile", Some(hostile), &["198.51.100.0/24"], &[])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        page.sign_in("admin").await;
        let cell = page.text("tr[data-policy=hostile] td.name", "<img").await;
        assert_eq!(cell, hostile);
        assert!(
            page.client
                .find_all(Locator::Css("#view img"))
                .await
                .unwrap()
                .is_empty(),
            "the name became an element"
        );
        page.click("tr[data-policy=hostile] a").await;
        assert_eq!(page.value("#policy-form input[name=name]").await, hostile);
        assert!(page.client.get_alert_text().await.is_err(), "a script ran");
        // The page's Content-Security-Policy is in force: an inline script does not run.
        let ran = page
            .script(
                "const s = document.createElement('script');
                 s.textContent = 'window.inlineRan = true';
                 document.body.append(s);
                 return window.inlineRan === true",
            )
            .await;
        assert_eq!(ran, json!(false), "an inline script ran");
        // Nothing but this origin was asked for anything.
        let origin = page.url("/");
        let requested = page
            .script("return performance.getEntriesByType('resource').map(e => e.name)")
            .await;
        let requested = requested.as_array().unwrap();
        assert!(!requested.is_empty());
        for url in requested {
            assert!(url.as_str().unwrap().starts_with(&origin), "{url}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_concurrent_change_is_explained_with_a_reload_offer() {
    run("version_conflict", (1280, 800), |page| async move {
        let (status, body) = page
            .api(
                Method::POST,
                POLICIES,
                Some(policy("vpn", Some("First"), &["198.51.100.0/24"], &[])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        page.sign_in("admin").await;
        page.open("/console/#policies/edit/vpn").await;
        page.text("#policy-form .version", "Version 1").await;

        // Renamed, and put in report mode.
        let elsewhere = json!({"data": {"id": "vpn", "type": "ipAllowlistPolicy",
            "attributes": {"name": "Changed elsewhere", "enforcement": "report"}}});
        let (status, body) = page
            .api(Method::PATCH, &format!("{POLICIES}/vpn"), Some(elsewhere))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        page.fill("#policy-form input[name=name]", "Mine").await;
        page.click("#save-policy").await;
        page.text(".notice.warning", "Someone else changed this")
            .await;
        page.click(".notice.warning .reload").await;
        page.text("#policy-form .version", "Version 2").await;
        assert_eq!(
            page.value("#policy-form input[name=name]").await,
            "Changed elsewhere"
        );
        // The reloaded policy reports: whom it would deny is shown below it.
        page.text("#would-deny .would-deny-totals", "0 requests")
            .await;

        page.fill("#policy-form input[name=name]", "Mine").await;
        page.click("#save-policy").await;
        page.text(".notice.success", "version 3").await;
        let (_, body) = page
            .api(Method::GET, &format!("{POLICIES}/vpn"), None)
            .await;
        assert_eq!(body["data"]["attributes"]["name"], "Mine");
    })
    .await;
}

#[tokio::test]
async fn a_narrow_window_keeps_every_control_reachable() {
    run("narrow_window", (400, 800), |page| async move {
        let (status, body) = page
            .api(
                Method::POST,
                POLICIES,
                Some(policy("vpn", Some("VPN"), &["198.51.100.0/24"], &["staff"])),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        page.sign_in("admin").await;
        // The page itself does not scroll sideways; the table scrolls in its frame.
        let overflow = page
            .script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
            .await;
        assert_eq!(overflow, json!(0), "the page scrolls sideways");
        page.click("tr[data-policy=vpn] a").await;
        page.find("#save-policy").await;
        // Every control has a label a screen reader can read.
        let unlabelled = page
            .script(
                "return [...document.querySelectorAll('input, select, textarea')]
                    .filter(e => !e.hidden && e.labels.length === 0 && !e.getAttribute('aria-label'))
                    .map(e => e.outerHTML)",
            )
            .await;
        assert_eq!(unlabelled, json!([]));
    })
    .await;
}

/// Refreshes the README's picture of the console, `docs/console.png` (run it with
/// `cargo test --all-features --test console -- --ignored readme_screenshot`).
#[tokio::test]
#[ignore = "writes docs/console.png; run it by hand when the console's look changes"]
async fn readme_screenshot() {
    run("readme_screenshot", (1100, 660), |page| async move {
        let seed = [
            json!({"data": {"id": "admins-vpn", "type": "ipAllowlistPolicy",
                "attributes": {"name": "Administrators: VPN only",
                    "allowedSources": ["198.51.100.0/24", "2001:db8:abcd::/48"]},
                "relationships": {"userGroups": {"data": [{"id": "admins", "type": "userGroup"}]}}}}),
            json!({"data": {"id": "office", "type": "ipAllowlistPolicy",
                "attributes": {"name": "Head office (trial)", "enforcement": "report",
                    "allowedSources": ["203.0.113.0/24"], "blockedSources": ["203.0.113.64/26"]},
                "relationships": {"users": {"data": [{"id": "alice", "type": "user"}]},
                    "userGroups": {"data": [{"id": "staff", "type": "userGroup"}]}}}}),
            json!({"data": {"id": "contractors", "type": "ipAllowlistPolicy",
                "attributes": {"name": "Contractors", "allowedSources": ["192.0.2.10-192.0.2.20"]}}}),
        ];
        for policy in seed {
            let (status, body) = page.api(Method::POST, POLICIES, Some(policy)).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        page.sign_in("alice").await;
        page.find("tr[data-policy=office]").await;
        let png = page.client.screenshot().await.unwrap();
        assert!(png.len() < 150_000, "{} bytes: too large for the README", png.len());
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/console.png");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, png).unwrap();
    })
    .await;
}

/// Only the development mode (the published secret) mints tokens, and only then does
/// the console offer the button.
#[tokio::test]
async fn the_development_token_route_exists_only_in_development_mode() {
    let user = json!({"user": "alice"});
    let deployed = demo::start_with("memory", "a-secret-of-this-deployment-only", &[]);
    let (status, _) = demo::send(
        deployed.addr,
        Method::POST,
        "/dev/token",
        None,
        Some(user.clone()),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, config) = demo::send(
        deployed.addr,
        Method::GET,
        "/console/config.json",
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(config, json!({"devTokenUrl": null}));

    let development = demo::start_with("memory", "", &[]);
    let (_, config) = demo::send(
        development.addr,
        Method::GET,
        "/console/config.json",
        None,
        None,
    )
    .await;
    assert_eq!(config, json!({"devTokenUrl": "/dev/token"}));
    let (status, minted) = demo::send(
        development.addr,
        Method::POST,
        "/dev/token",
        None,
        Some(user),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{minted}");
    let token = minted["token"].as_str().unwrap();
    let (status, me) = demo::send(development.addr, Method::GET, POLICIES, Some(token), None).await;
    assert_eq!(status, StatusCode::OK, "a manager's token: {me}");
    let (status, _) = demo::send(
        development.addr,
        Method::POST,
        "/dev/token",
        None,
        Some(json!({"user": " "})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_resource_allowlist_is_created_reported_only_and_removed() {
    run("resource_list", (1280, 800), |page| async move {
        let media = "/api/v1/projects/apollo/media/cover.png";
        page.sign_in("admin").await;
        page.click("nav a[href='#resources']").await;
        page.click("#view .toolbar a").await;
        page.fill("#resource-form input[name=resource]", "apollo")
            .await;
        page.fill(
            "#resource-form textarea[name=allowedSources]",
            "203.0.113.0/24",
        )
        .await;
        page.click("#resource-form button[type=submit]").await;
        page.text("tr[data-resource=apollo]", "enforce").await;
        let (status, _) = page.api(Method::GET, media, None).await;
        assert_eq!(
            status,
            StatusCode::FORBIDDEN,
            "loopback is outside the list"
        );

        page.click("tr[data-resource=apollo] a").await;
        page.find("#resource-form select")
            .await
            .select_by_value("report")
            .await
            .unwrap();
        page.click("#resource-form button[type=submit]").await;
        page.text("tr[data-resource=apollo]", "report only").await;
        let (status, _) = page.api(Method::GET, media, None).await;
        assert_eq!(status, StatusCode::OK, "report only refuses nothing");

        page.click("tr[data-resource=apollo] button.danger").await;
        page.click("tr[data-resource=apollo] .confirm-delete").await;
        page.gone("tr[data-resource=apollo]").await;
        let (status, _) = page
            .api(
                Method::GET,
                "/api/v1/entities/resourceAllowlists/apollo",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    })
    .await;
}
