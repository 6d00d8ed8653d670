//! Helpers shared by the integration tests: an axum app on loopback, the demo server
//! as a process, and capturing `tracing` events. Each test binary uses its own part.
#![allow(dead_code, unreachable_pub)]

pub mod capture;
pub mod demo;

use std::net::SocketAddr;

use axum::Router;
use tokio::net::TcpListener;

/// Serves `app` on 127.0.0.1 with peer addresses; returns its address.
pub async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });
    addr
}
