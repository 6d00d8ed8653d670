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
