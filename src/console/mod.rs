//! An administrator's console in the browser: plain HTML, CSS and JavaScript modules
//! embedded in the binary, served by an axum router to mount at `/console` beside the
//! [admin router](crate::admin).
//!
//! The console is a client of the admin API only: it signs in with a bearer token
//! pasted in (kept in the tab's session storage, never in a cookie or the URL) and
//! calls the same routes `curl` would, so it can do nothing the token's holder could
//! not. From it an administrator:
//!
//! - lists, creates, edits and deletes policies, with sources edited one per line,
//!   each validation error shown on its line and the API's suggested fix
//!   (`did you mean 198.51.100.0/24?`) applied with one click; assigns and unassigns
//!   users and groups; is told when someone else changed the policy meanwhile (412),
//!   with a reload offer;
//! - sees the group hierarchy as a tree and edits a group's parents (cycles are
//!   refused with the API's message);
//! - edits the site allowlist and resource allowlists, including report-only; a
//!   change the lockout guard refuses (409) is shown as a warning with an explicit
//!   "apply anyway" step (`?force=true`);
//! - sees whom a report-only policy, site list or resource list would have refused
//!   (callers with user, address, count, first and last seen; total and other
//!   requests; the summary's scope), and is warned, with the same "apply anyway"
//!   step, before enforcing one that would refuse them (409 `wouldDenyCallers`);
//! - checks access: `evaluate` for a user, groups and address, and "my access";
//! - reads the audit trail.
//!
//! # Security
//!
//! Every response carries a strict `Content-Security-Policy` (scripts, styles and
//! requests to this origin only; no inline script or style, no `eval`, no framing)
//! with `X-Frame-Options: DENY`, `X-Content-Type-Options: nosniff` and
//! `Referrer-Policy: no-referrer`. Every value from the API is rendered as text (a
//! policy named `<img src=x onerror=alert(1)>` shows those characters), and the
//! console makes no request to another origin.
//!
//! The files hold no data and no secret: mount them outside the authentication layer
//! (as the demo server does) or inside it, as you prefer; the API calls are what is
//! authorized. The console expects the admin API at its absolute paths
//! (`/api/v1/...`) on the same origin.
//!
//! A [development sign-in](Console::dev_token_url) may be offered: a button that
//! asks an endpoint of your own for a token for a named user. Only the demo server's
//! development mode has one; never offer it with real keys.
//!
//! # Example
//!
//! ```
//! use axum::{body::Body, http::{Request, StatusCode}, Router};
//! use tower::ServiceExt;
//! use tower_ip_allowlist::{admin, console, store::Store};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = Store::memory();
//! // In a real service the admin router sits behind the JWT and allowlist layers.
//! let app = Router::new()
//!     .merge(admin::router(store))
//!     .merge(console::router());
//!
//! let response = app
//!     .oneshot(Request::get("/console/").body(Body::empty()).unwrap())
//!     .await
//!     .unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(response.headers()["content-security-policy"]
//!     .to_str()
//!     .unwrap()
//!     .contains("frame-ancestors 'none'"));
//! # }
//! ```

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use http::{HeaderName, HeaderValue, StatusCode};
use serde_json::json;

/// The policy every console response carries: this origin only, no inline script or
/// style, no `eval`, no plugins, no framing, no form posts, no `<base>`.
pub const CONTENT_SECURITY_POLICY_VALUE: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// One embedded file: its name under the console's root, media type and bytes.
struct Asset {
    name: &'static str,
    media_type: &'static str,
    bytes: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of. `index.html` is served at the root.
const ASSETS: &[Asset] = &[
    Asset {
        name: "index.html",
        media_type: "text/html; charset=utf-8",
        bytes: include_bytes!("assets/index.html"),
    },
    Asset {
        name: "console.css",
        media_type: "text/css; charset=utf-8",
        bytes: include_bytes!("assets/console.css"),
    },
    Asset {
        name: "app.js",
        media_type: JS,
        bytes: include_bytes!("assets/app.js"),
    },
    Asset {
        name: "api.js",
        media_type: JS,
        bytes: include_bytes!("assets/api.js"),
    },
    Asset {
        name: "dom.js",
        media_type: JS,
        bytes: include_bytes!("assets/dom.js"),
    },
    Asset {
        name: "would-deny.js",
        media_type: JS,
        bytes: include_bytes!("assets/would-deny.js"),
    },
    Asset {
        name: "sources.js",
        media_type: JS,
        bytes: include_bytes!("assets/sources.js"),
    },
    Asset {
        name: "policies.js",
        media_type: JS,
        bytes: include_bytes!("assets/policies.js"),
    },
    Asset {
        name: "groups.js",
        media_type: JS,
        bytes: include_bytes!("assets/groups.js"),
    },
    Asset {
        name: "lists.js",
        media_type: JS,
        bytes: include_bytes!("assets/lists.js"),
    },
    Asset {
        name: "access.js",
        media_type: JS,
        bytes: include_bytes!("assets/access.js"),
    },
    Asset {
        name: "audit.js",
        media_type: JS,
        bytes: include_bytes!("assets/audit.js"),
    },
];

/// The console with its defaults (no development sign-in), at [`PATH`]: merge it into
/// your app beside the admin router; see the [module docs](self).
pub fn router() -> Router {
    Console::new().into_router()
}

/// Builds the console's router; see the [module docs](self).
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Console {
    dev_token_url: Option<String>,
}

impl Console {
    /// A console with no development sign-in.
    pub fn new() -> Self {
        Self::default()
    }

    /// Offers a "development token" button on the sign-in page: it `POST`s
    /// `{"user": "<name>"}` (as `application/json`) to `url`, a path on the same
    /// origin such as `/dev/token`, and signs in with the `token` member of the
    /// answer.
    ///
    /// # Security
    ///
    /// Whoever reaches that endpoint gets a token: offer it only in development, with
    /// a secret that guards nothing (the demo server does so only when it runs with
    /// its published development secret).
    pub fn dev_token_url(mut self, url: impl Into<String>) -> Self {
        self.dev_token_url = Some(url.into());
        self
    }

    /// The router, with every route at its absolute path under [`PATH`] (merge it
    /// into your app, as the admin router): the page at `/console/` (`/console` is
    /// redirected there, so relative links resolve), its files, and
    /// `/console/config.json`, what the page needs to know of this builder.
    pub fn into_router(self) -> Router {
        let config = json!({ "devTokenUrl": self.dev_token_url }).to_string();
        Router::new()
            .route(PATH, get(redirect))
            .route(
                "/console/",
                get(|| async { serve(ASSETS[0].media_type, ASSETS[0].bytes) }),
            )
            .route(
                "/console/config.json",
                get(move || {
                    let config = config.clone();
                    async move { secured(StatusCode::OK, "application/json", config.into()) }
                }),
            )
            // Any depth, so that every answer under the console carries its headers.
            .route("/console/{*file}", get(file))
    }
}

/// Where the console is served.
pub const PATH: &str = "/console";

/// `/console` to `/console/`: relative links would otherwise resolve against `/`.
async fn redirect() -> Response {
    let mut response = secured(
        StatusCode::PERMANENT_REDIRECT,
        "text/plain; charset=utf-8",
        bytes::Bytes::new(),
    );
    response
        .headers_mut()
        .insert(LOCATION, HeaderValue::from_static("/console/"));
    response
}

async fn file(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|asset| asset.name == name) {
        Some(asset) => serve(asset.media_type, asset.bytes),
        None => secured(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            bytes::Bytes::from_static(b"no such file in the console\n"),
        ),
    }
}

fn serve(media_type: &'static str, bytes: &'static [u8]) -> Response {
    secured(StatusCode::OK, media_type, bytes::Bytes::from_static(bytes))
}

/// A response with the console's security headers.
fn secured(status: StatusCode, media_type: &'static str, body: bytes::Bytes) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY_VALUE),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    // The files change with the binary: always revalidate, so an upgrade is seen.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(app: &Router, path: &str) -> (StatusCode, http::HeaderMap, String) {
        let response = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8_lossy(&bytes).into_owned(),
        )
    }

    fn assert_secured(headers: &http::HeaderMap, path: &str) {
        assert_eq!(
            headers[CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY_VALUE,
            "{path}"
        );
        assert_eq!(headers[X_FRAME_OPTIONS], "DENY", "{path}");
        assert_eq!(headers[X_CONTENT_TYPE_OPTIONS], "nosniff", "{path}");
        assert_eq!(headers[REFERRER_POLICY], "no-referrer", "{path}");
    }

    #[tokio::test]
    async fn every_file_is_served_with_its_type_and_the_security_headers() {
        let app = router();
        for asset in ASSETS {
            let path = format!("/console/{}", asset.name);
            let (status, headers, body) = get(&app, &path).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(headers[CONTENT_TYPE], asset.media_type, "{path}");
            assert_secured(&headers, &path);
            assert_eq!(body.as_bytes(), asset.bytes, "{path}");
        }
        let (status, headers, body) = get(&app, "/console/").await;
        assert_eq!(status, StatusCode::OK);
        assert_secured(&headers, "/console/");
        assert!(body.contains(r#"<script type="module" src="app.js"></script>"#));

        let (status, headers, _) = get(&app, "/console").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[LOCATION], "/console/");

        for missing in [
            "/console/secret.txt",
            "/console/..%2FCargo.toml",
            "/console/a/b",
        ] {
            let (status, headers, _) = get(&app, missing).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
            assert_secured(&headers, missing);
        }
    }

    #[tokio::test]
    async fn the_page_learns_of_the_development_sign_in_from_its_config() {
        let (status, headers, body) = get(&router(), "/console/config.json").await;
        assert_eq!(status, StatusCode::OK);
        assert_secured(&headers, "config.json");
        assert_eq!(body, r#"{"devTokenUrl":null}"#);
        let app = Console::new().dev_token_url("/dev/token").into_router();
        let (_, _, body) = get(&app, "/console/config.json").await;
        assert_eq!(body, r#"{"devTokenUrl":"/dev/token"}"#);
    }

    /// No inline script or style anywhere (the policy would block them, and the page
    /// would silently break), no third-party URL, and no HTML built from strings.
    #[test]
    fn the_files_need_nothing_the_policy_forbids() {
        for asset in ASSETS {
            let text = std::str::from_utf8(asset.bytes).unwrap();
            for forbidden in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
                "new Function",
                "style=",
                "<style",
                "onclick=",
                "http://",
                "https://",
                "javascript:",
            ] {
                assert!(
                    !text.contains(forbidden),
                    "{} contains {forbidden}",
                    asset.name
                );
            }
            if asset.name.ends_with(".html") {
                assert_eq!(text.matches("<script").count(), 1, "{}", asset.name);
                assert!(text.contains(r#"<script type="module" src="app.js"></script>"#));
            }
        }
    }
}
