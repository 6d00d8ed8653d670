//! The layer in a real tonic server, called by a real tonic client over loopback.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Endpoint, Server};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::policy::{OrgId, OrgPolicies, Policy};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::snapshot::SnapshotHandle;

/// Stand-in authentication: the `x-user` metadata becomes the principal.
fn metadata_auth(
    mut request: http::Request<tonic::body::Body>,
) -> http::Request<tonic::body::Body> {
    let user = request
        .headers()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(Principal::new);
    if let Some(principal) = user {
        request.extensions_mut().insert(principal);
    }
    request
}

async fn serve(handle: SnapshotHandle) -> SocketAddr {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        Server::builder()
            .layer(tower::util::MapRequestLayer::new(metadata_auth))
            .layer(AllowlistLayer::new(handle))
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    addr
}

async fn check(server: SocketAddr, from: &str, user: Option<&str>) -> Result<(), tonic::Status> {
    let channel = Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .local_address(Some(from.parse::<IpAddr>().unwrap()))
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    if let Some(user) = user {
        request
            .metadata_mut()
            .insert("x-user", user.parse().unwrap());
    }
    client.check(request).await.map(|_| ())
}

#[tokio::test]
async fn tonic_client_sees_permission_denied() {
    let handle = SnapshotHandle::default();
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("desk")
            .sources(["127.0.0.2/32"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    handle.set_org(OrgId::default(), &org);
    let server = serve(handle.clone()).await;

    check(server, "127.0.0.2", Some("alice"))
        .await
        .expect("allowed from 127.0.0.2");
    let status = check(server, "127.0.0.3", Some("alice")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    // Not restricted: a user without policy.
    check(server, "127.0.0.3", Some("bob"))
        .await
        .expect("bob has no policy");
    // An anonymous call is refused by default (the layer cannot know who it is).
    let status = check(server, "127.0.0.3", None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    // Published changes apply to the next call.
    org.insert_policy(
        Policy::builder("desk")
            .sources(["127.0.0.3/32"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    handle.set_org(OrgId::default(), &org);
    check(server, "127.0.0.3", Some("alice"))
        .await
        .expect("allowed after the change");
    let status = check(server, "127.0.0.2", Some("alice")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied);
}

/// The usual tonic authentication: an interceptor that turns `x-user` metadata into
/// the principal.
#[allow(clippy::result_large_err)] // tonic's interceptor signature
fn interceptor(mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
    let user = request
        .metadata()
        .get("x-user")
        .and_then(|v| v.to_str().ok())
        .map(Principal::new);
    if let Some(principal) = user {
        request.extensions_mut().insert(principal);
    }
    Ok(request)
}

/// `alice` may call only from 127.0.0.2.
fn alice_at_her_desk() -> SnapshotHandle {
    let mut org = OrgPolicies::default();
    org.insert_policy(
        Policy::builder("desk")
            .sources(["127.0.0.2"])
            .unwrap()
            .user("alice")
            .build()
            .unwrap(),
    );
    let handle = SnapshotHandle::default();
    handle.set_org(OrgId::default(), &org);
    handle
}

/// An interceptor added as a server layer, outside the allowlist, is seen by it: the
/// documented way to authenticate a tonic service before the allowlist.
#[tokio::test]
async fn an_interceptor_layer_before_the_allowlist_is_seen() {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let handle = alice_at_her_desk();
    tokio::spawn(async move {
        Server::builder()
            .layer(tonic::service::InterceptorLayer::new(interceptor))
            .layer(AllowlistLayer::new(handle))
            .add_service(health)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    check(server, "127.0.0.2", Some("alice"))
        .await
        .expect("alice at her desk");
    let status = check(server, "127.0.0.3", Some("alice")).await.unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
}

/// A per-service interceptor runs inside the router, after every
/// `Server::builder().layer(..)`: the allowlist never sees its identity. With the
/// default (anonymous requests refused) that fails closed, as the docs warn.
#[tokio::test]
async fn a_per_service_interceptor_is_not_seen_by_the_allowlist() {
    let (_reporter, health) = tonic_health::server::health_reporter();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = listener.local_addr().unwrap();
    let handle = alice_at_her_desk();
    tokio::spawn(async move {
        Server::builder()
            .layer(AllowlistLayer::new(handle))
            .add_service(tonic::service::interceptor::InterceptedService::new(
                health,
                interceptor,
            ))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    // Even from her desk, alice is unknown to the allowlist: refused, not let through.
    let status = check(server, "127.0.0.2", Some("alice")).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}
