//! A gRPC service (the standard health service) behind the JWT layer and the allowlist,
//! with a tiny client mode to try it.
//!
//! ```text
//! cargo run --example tonic_basic                       # the server, on 127.0.0.1:50051
//! cargo run --example tonic_basic -- client alice       # OK: alice may come from loopback
//! cargo run --example tonic_basic -- client mallory     # PermissionDenied: only from 192.0.2.0/24
//! cargo run --example tonic_basic -- client             # Unauthenticated: no token, no identity
//! ```
//!
//! The server verifies HS256 tokens signed with a development secret, which the client
//! mode signs with too; with `JWKS_URL=https://...` (or `OIDC_ISSUER=https://...`) set,
//! it verifies tokens of your identity provider instead (pass one with
//! `TOKEN=... cargo run --example tonic_basic -- client`). `LISTEN` changes the address.
//!
//! Stack, outermost first: JWT authentication (a token becomes the caller; a bad one is
//! refused with `UNAUTHENTICATED`), then the allowlist (a caller outside their policy's
//! sources is refused with `PERMISSION_DENIED`, a request with no caller with
//! `UNAUTHENTICATED`).

use std::net::SocketAddr;
use std::time::Duration;

use tonic::transport::{Endpoint, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_ip_allowlist::jwt::{encode_hs256, JwtAuthLayer, RemoteKeys, TokenClaims};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::snapshot::SnapshotHandle;

/// Anyone can read it here: development only.
const DEV_SECRET: &[u8] = b"tower-ip-allowlist tonic example secret, development only";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "tower_ip_allowlist=debug".into()),
        )
        .init();
    let addr: SocketAddr = std::env::var("LISTEN")
        .unwrap_or_else(|_| "127.0.0.1:50051".into())
        .parse()?;
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        None => serve(addr).await,
        Some("client") => client(addr, args.next()).await,
        Some(other) => Err(format!(
            "unknown command {other:?}: run with no argument, or `client [USER]`"
        )
        .into()),
    }
}

async fn serve(addr: SocketAddr) -> Result<(), Box<dyn std::error::Error>> {
    // alice may come from loopback; mallory only from 192.0.2.0/24; others are free.
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("alice-local")
            .sources(["127.0.0.1", "::1"])?
            .user("alice")
            .build()?,
    );
    org.insert_policy(
        Policy::builder("mallory-office")
            .sources(["192.0.2.0/24"])?
            .user("mallory")
            .build()?,
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);

    let jwt = match (std::env::var("JWKS_URL"), std::env::var("OIDC_ISSUER")) {
        (Ok(url), _) => JwtAuthLayer::remote(RemoteKeys::jwks_url(url).start().await?),
        (_, Ok(issuer)) => JwtAuthLayer::remote(RemoteKeys::oidc_issuer(issuer).start().await?),
        _ => JwtAuthLayer::hs256(DEV_SECRET),
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;

    println!("gRPC health service on {addr}; try:");
    println!("  cargo run --example tonic_basic -- client alice     # OK");
    println!("  cargo run --example tonic_basic -- client mallory   # PermissionDenied");
    println!("  cargo run --example tonic_basic -- client           # Unauthenticated");
    Server::builder()
        .layer(jwt)
        .layer(AllowlistLayer::new(handle))
        .add_service(health)
        .serve(addr)
        .await?;
    Ok(())
}

/// Calls `Health/Check` as `user` (a token signed with the development secret), or
/// with `TOKEN` from the environment, or with no token.
async fn client(addr: SocketAddr, user: Option<String>) -> Result<(), Box<dyn std::error::Error>> {
    let token = match (std::env::var("TOKEN"), user) {
        (Ok(token), _) => Some(token),
        (_, Some(user)) => Some(encode_hs256(
            DEV_SECRET,
            &TokenClaims::new(user, Duration::from_secs(300)),
        )?),
        _ => None,
    };
    let channel = Endpoint::from_shared(format!("http://{addr}"))?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse()?);
    }
    match HealthClient::new(channel).check(request).await {
        Ok(response) => println!("OK: {:?}", response.into_inner().status()),
        Err(status) => println!("{:?}: {}", status.code(), status.message()),
    }
    Ok(())
}
