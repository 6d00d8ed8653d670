//! A minimal axum app with a fixed policy set built in code and a stand-in
//! authentication layer that reads the `x-user` and `x-groups` headers.
//!
//! ```text
//! cargo run --example axum_basic
//! ```
//!
//! It prints curl lines to try.

use std::net::SocketAddr;

use axum::extract::Request;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use tower_ip_allowlist::client_ip::ClientIp;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;

/// Stand-in for a real authentication layer: trusts the `x-user` header. Never do this
/// in production; see the `jwt` module for a real one.
async fn header_auth(mut request: Request, next: Next) -> Response {
    let (user, groups) = {
        let header = |name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        (header("x-user"), header("x-groups").unwrap_or_default())
    };
    if let Some(user) = user {
        let principal =
            Principal::new(user).with_groups(groups.split(',').filter(|g| !g.is_empty()));
        request.extensions_mut().insert(principal);
    }
    next.run(request).await
}

async fn hello(ip: ClientIp) -> String {
    format!("hello from {}\n", ip.addr)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "tower_ip_allowlist=debug".into()),
        )
        .init();

    // alice may only come from 127.0.0.1; members of "contractors" (and its child group
    // "interns") only from 192.0.2.0/24; everybody else is unrestricted.
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("alice-local")
            .sources(["127.0.0.1"])?
            .user("alice")
            .build()?,
    );
    org.insert_policy(
        Policy::builder("contractors-office")
            .name("Contractors from their office only")
            .sources(["192.0.2.0/24"])?
            .group("contractors")
            .build()?,
    );
    org.groups.set_parents("interns", ["contractors"])?;
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);

    let app = Router::new()
        .route("/", get(hello))
        .layer(AllowlistLayer::new(handle))
        .layer(middleware::from_fn(header_auth));

    let addr: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:3001".into())
        .parse()?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    println!("listening on http://{addr}; try:");
    println!("  curl -i http://{addr}/ -H 'x-user: alice'                    # 200: alice from 127.0.0.1");
    println!("  curl -i http://{addr}/ -H 'x-user: bob'                      # 200: no policy applies to bob");
    println!("  curl -i http://{addr}/ -H 'x-user: eve' -H 'x-groups: interns' # 403: interns inherit contractors' office-only policy");
    println!("  curl -i http://{addr}/                                       # 401: anonymous, and this app has no public route");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
