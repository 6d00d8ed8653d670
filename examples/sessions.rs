//! Cookie sessions with `tower-sessions`: a signed-in user's session yields an
//! [`Identity`], and the allowlist applies to it exactly as to a JWT.
//!
//! ```text
//! cargo run --example sessions                       # http://127.0.0.1:3000
//! curl -si -X POST 127.0.0.1:3000/login -H 'content-type: application/json' -d '{"user":"bob"}'
//! # 403 {"errors":[{"status":"403","code":"ipNotAllowed",...}]}: bob may only work from the office
//! curl -si -c jar -X POST 127.0.0.1:3000/login -H 'content-type: application/json' -d '{"user":"alice"}'
//! curl -s -b jar 127.0.0.1:3000/me                   # {"user":"alice","teams":[]}
//! ```
//!
//! - **Sign-in.** `POST /login` looks the user up in the application's directory (here
//!   a fixed map with no passwords: put your real check there), then asks the
//!   allowlist whether this user, with these groups, may work from this address,
//!   **before** the session is created. A restricted user outside their policies is
//!   refused with 403 `ipNotAllowed`, the same answer the layer gives, which names
//!   no address that would be allowed, and no session or cookie is created. The
//!   session id is cycled at sign-in (no session fixation).
//! - **Every request.** A small middleware reads the session's user and inserts it into
//!   the request extensions; `AllowlistLayer::with_identity::<SessionUser>()` reads it
//!   there, as it reads a JWT's `Principal`. A session created from the office is
//!   refused from elsewhere on its next request; a policy changed at runtime applies
//!   to sessions already open, on their next request.
//! - **Groups** are the ones the directory gave at sign-in, kept in the session; look
//!   them up per request instead if they must follow directory changes sooner.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_ip_allowlist::client_ip::{ClientIp, ClientIpLayer, ClientIpResolver};
use tower_ip_allowlist::layer::{AllowlistLayer, DefaultRejection, Denial, Rejection};
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Identity;
use tower_ip_allowlist::snapshot::{Decision, SnapshotHandle};
use tower_sessions::{MemoryStore, Session, SessionManagerLayer};

/// The session key the signed-in user is kept under.
const USER_KEY: &str = "user";

/// The signed-in user, as the session keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SessionUser {
    login: String,
    teams: Vec<String>,
}

impl Identity for SessionUser {
    fn user_id(&self) -> &str {
        &self.login
    }

    fn group_ids(&self) -> impl Iterator<Item = &str> {
        self.teams.iter().map(String::as_str)
    }

    fn organization_id(&self) -> Option<&str> {
        None
    }
}

#[derive(Clone)]
struct App {
    handle: SnapshotHandle,
    /// The application's directory: login to teams. A real one checks a password.
    directory: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

fn error(status: StatusCode, code: &str, detail: &str) -> Response {
    let body = json!({"errors": [{"status": status.as_str(), "code": code, "detail": detail}]});
    (status, Json(body)).into_response()
}

/// Signs in: refused before any session exists when the allowlist would refuse the
/// user from here.
async fn login(
    State(app): State<App>,
    session: Session,
    ip: ClientIp,
    Json(form): Json<Login>,
) -> Response {
    let Some(teams) = app.directory.get(&form.user) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "unknown user or wrong password",
        );
    };
    let decision = app.handle.load().decide(
        None,
        &form.user,
        teams.iter().map(String::as_str),
        Some(ip.addr),
    );
    if let Decision::Denied(reason) = decision {
        // The layer's own answer, built by the same rejection: it says that this
        // address is refused, not which ones would be allowed.
        let denial = Denial::new(reason, false, Some(ip.clone()));
        return DefaultRejection.reject(&denial).map(Body::from);
    }
    let user = SessionUser {
        login: form.user,
        teams: teams.clone(),
    };
    let stored = async {
        session.cycle_id().await?;
        session.insert(USER_KEY, &user).await
    }
    .await;
    match stored {
        Ok(()) => Json(json!({"user": user.login})).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "cannot store the session");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sessionUnavailable",
                "retry later",
            )
        }
    }
}

async fn logout(session: Session) -> StatusCode {
    match session.flush().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn me(Extension(user): Extension<SessionUser>) -> Json<serde_json::Value> {
    Json(json!({"user": user.login, "teams": user.teams}))
}

/// The session's user, if one signed in, into the request extensions, where the
/// allowlist and the handlers read it.
async fn session_identity(session: Session, mut request: Request, next: Next) -> Response {
    match session.get::<SessionUser>(USER_KEY).await {
        Ok(Some(user)) => {
            request.extensions_mut().insert(user);
        }
        Ok(None) => {}
        Err(err) => {
            tracing::error!(error = %err, "cannot read the session");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "sessionUnavailable",
                "retry later",
            );
        }
    }
    next.run(request).await
}

/// The service: policies built in code (contractors work from the office network
/// only), sessions in memory.
fn app() -> Result<Router, Box<dyn std::error::Error>> {
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("office-only")
            .sources(["203.0.113.0/24"])?
            .group("contractors")
            .build()?,
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    let state = App {
        handle: handle.clone(),
        directory: HashMap::from([
            ("alice".to_owned(), vec![]),
            ("bob".to_owned(), vec!["contractors".to_owned()]),
        ]),
    };
    // Local HTTP: a real deployment keeps the default `Secure` cookies.
    let sessions = SessionManagerLayer::new(MemoryStore::default()).with_secure(false);
    let gated = Router::new()
        .route("/me", get(me))
        // No session: 401 from the allowlist, which fails closed without an identity.
        .layer(AllowlistLayer::new(handle).with_identity::<SessionUser>());
    Ok(Router::new()
        .route("/login", post(login))
        .route("/logout", post(logout))
        .merge(gated)
        .with_state(state)
        .layer(middleware::from_fn(session_identity))
        .layer(sessions)
        .layer(ClientIpLayer::new(ClientIpResolver::peer())))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app()?.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
    use http::{Method, Request};
    use tower::ServiceExt;
    use tower_ip_allowlist::testing::TestRequest;

    use super::*;

    const OFFICE: &str = "203.0.113.7";
    const CAFE: &str = "192.0.2.1";

    async fn send(
        app: &Router,
        method: Method,
        path: &str,
        peer: &str,
        cookie: Option<&str>,
        body: Option<&str>,
    ) -> Response {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(cookie) = cookie {
            request = request.header(COOKIE, cookie);
        }
        if body.is_some() {
            request = request.header(CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_owned())))
            .unwrap()
            .with_peer(peer);
        app.clone().oneshot(request).await.unwrap()
    }

    /// The `name=value` of the response's session cookie, if it set one.
    fn cookie(response: &Response) -> Option<String> {
        let value = response.headers().get(SET_COOKIE)?.to_str().ok()?;
        Some(value.split(';').next()?.to_owned())
    }

    #[tokio::test]
    async fn a_restricted_user_is_refused_at_sign_in_without_a_session() {
        let app = app().unwrap();
        let refused = send(
            &app,
            Method::POST,
            "/login",
            CAFE,
            None,
            Some(r#"{"user":"bob"}"#),
        )
        .await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(cookie(&refused), None, "no session is created");
        let body = axum::body::to_bytes(refused.into_body(), 4096)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(
            body.contains("ipNotAllowed") && !body.contains("203.0.113"),
            "{body}"
        );
        // Exactly the allowlist layer's refusal, not a look-alike.
        let layer = DefaultRejection.reject(&Denial::new(
            tower_ip_allowlist::snapshot::DenyReason::IpNotAllowed,
            false,
            None,
        ));
        assert_eq!(body.as_bytes(), layer.body().as_ref());
    }

    #[tokio::test]
    async fn the_allowlist_applies_to_a_session_as_to_a_jwt() {
        let app = app().unwrap();
        let signed_in = send(
            &app,
            Method::POST,
            "/login",
            OFFICE,
            None,
            Some(r#"{"user":"bob"}"#),
        )
        .await;
        assert_eq!(signed_in.status(), StatusCode::OK);
        let session = cookie(&signed_in).expect("a session cookie");

        let here = send(&app, Method::GET, "/me", OFFICE, Some(&session), None).await;
        assert_eq!(here.status(), StatusCode::OK);
        let elsewhere = send(&app, Method::GET, "/me", CAFE, Some(&session), None).await;
        assert_eq!(
            elsewhere.status(),
            StatusCode::FORBIDDEN,
            "same session, outside bob's policy"
        );

        let anonymous = send(&app, Method::GET, "/me", OFFICE, None, None).await;
        assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

        // Alice has no policy: she signs in and works from anywhere.
        let alice = send(
            &app,
            Method::POST,
            "/login",
            CAFE,
            None,
            Some(r#"{"user":"alice"}"#),
        )
        .await;
        let alice = cookie(&alice).expect("a session cookie");
        let me = send(&app, Method::GET, "/me", CAFE, Some(&alice), None).await;
        assert_eq!(me.status(), StatusCode::OK);
    }
}
