//! Helpers shared by the integration tests: an axum app on loopback, the demo server
//! as a process, and capturing `tracing` events. Each test binary uses its own part.
#![allow(dead_code, unreachable_pub)]

pub mod capture;
pub mod demo;

use std::convert::Infallible;
use std::net::SocketAddr;

use axum::extract::Request;
use axum::response::Response;
use axum::ServiceExt;
use tokio::net::TcpListener;
use tower::Service;

/// Serves `app` (a `Router`, or any service such as layers around one) on 127.0.0.1
/// with peer addresses; returns its address.
pub async fn serve<S>(app: S) -> SocketAddr
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    serve_on(listener, app);
    addr
}

/// Serves `app` with peer addresses on a listener the test bound itself.
pub fn serve_on<S>(listener: TcpListener, app: S)
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
}

/// A gRPC health check to `server` over loopback, with `Authorization: Bearer <token>`
/// when given.
pub async fn grpc_health_check(
    server: SocketAddr,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{server}"))
        .unwrap()
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
        service: String::new(),
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(request)
        .await
        .map(|_| ())
}
