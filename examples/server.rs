//! The demo server: a complete service with JWT authentication, the allowlist, the
//! admin API and a persistent store, with no other setup.
//!
//! ```text
//! cargo run --release --example server                      # 127.0.0.1:3000, sqlite://allowlist.db
//! cargo run --release --example server -- --help
//! cargo run --release --example server -- mint-token --user alice --permission MANAGE
//! # several replicas sharing one PostgreSQL database:
//! cargo run --release --example server -- --listen 127.0.0.1:3001 --database postgres://postgres@127.0.0.1:5432/test
//! cargo run --release --example server -- --listen 127.0.0.1:3002 --database postgres://postgres@127.0.0.1:5432/test
//! # behind layer-4 balancers (haproxy `send-proxy-v2`, AWS NLB) at 10.0.0.0/24:
//! cargo run --release --example server -- --proxy-protocol --trusted-proxy 10.0.0.0/24
//! # tokens from an identity provider instead of the development secret:
//! cargo run --release --example server -- --oidc-issuer https://sso.example.com/realms/acme --audience orders-api
//! cargo run --release --example server -- --jwks-url https://sso.example.com/jwks.json
//! ```
//!
//! With PostgreSQL, a change made through one replica is enforced by the others within
//! moments (`LISTEN`/`NOTIFY`). A replica starts even while the database is down: it
//! answers `/health`, and 503 on the gated routes until its policies are loaded.
//!
//! Routes:
//! - `GET /health`: 200, never authenticated nor gated;
//! - `GET /api/v1/profile`: the caller's user, organization, tenant, address and, for a
//!   caller using an API token, the token's id (401
//!   without a valid token or with one of another organization, 403 when the allowlist
//!   denies);
//! - `GET /api/v1/projects/{project}/media/{file}`: a small body, guarded by the
//!   project's resource allowlist (`/api/v1/entities/resourceAllowlists/{project}`);
//! - the admin API of `tower_ip_allowlist::admin` (`/api/v1/entities/ipAllowlistPolicies`,
//!   `siteAllowlist`, `resourceAllowlists`, `evaluate`, `myAccess`, `apiTokens`, ...);
//! - `GET /console/`: the administrator's console (`tower_ip_allowlist::console`), a
//!   client of the admin API; open it in a browser;
//! - `POST /dev/token` with `{"user": "alice"}`, in development mode only (the fixed
//!   development secret, no `--jwks-url` or `--oidc-issuer`): a token with the manage
//!   permission for that user, as `mint-token` prints, behind the console's
//!   "development token" button.
//!
//! Stack, outermost first: trace, the request deadlines, client address (resolved
//! once, with `--trusted-proxy`), tenant (from the host with `--tenant-domain`, else
//! the default organization), site allowlist (before authentication), API tokens
//! (`Authorization: Bearer tia_...`, created with `POST /api/v1/entities/apiTokens`;
//! off with `--no-api-tokens`), JWT authentication, allowlist (which also refuses tokens of another organization than
//! the tenant), routes. `/health` belongs to no tenant and is never gated.
//!
//! At the edge (`serving`): a deadline for each request head (`--header-timeout`,
//! which also closes idle keep-alive connections), for each body
//! (`--body-timeout`, `--request-timeout`), a cap on connections served at once
//! (`--max-connections`; more wait to be accepted), and on SIGTERM or Ctrl-C a
//! shutdown that stops accepting, closes idle and half-sent connections at once, lets
//! requests in flight finish, and exits within `--shutdown-grace` whatever clients
//! do. With `--proxy-protocol`, connections from the `--trusted-proxy` balancers start
//! with a PROXY header naming the client.

#[path = "serving/mod.rs"]
mod serving;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Path};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use axum::{Extension, Json, Router};
use clap::{Parser, Subcommand};
use http::Extensions;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;
use tower_ip_allowlist::admin;
use tower_ip_allowlist::api_token::{ApiTokenAuth, ApiTokenLayer};
use tower_ip_allowlist::client_ip::{ClientIp, ClientIpLayer, ClientIpResolver, ForwardedHeader};
use tower_ip_allowlist::console::Console;
use tower_ip_allowlist::jwt::{
    encode_hs256, JwtAuthLayer, RemoteKeys, RequirePrincipalLayer, TokenClaims,
};
use tower_ip_allowlist::layer::AllowlistLayer;
use tower_ip_allowlist::lists::{ResourceAllowlistLayer, SiteAllowlistLayer};
use tower_ip_allowlist::principal::Principal;
use tower_ip_allowlist::proxy_protocol::{
    ProxiedStream, ProxyProtocolConfig, ProxyProtocolListener,
};
use tower_ip_allowlist::snapshot::SnapshotHandle;
use tower_ip_allowlist::store::{
    Backend, Limits, MemoryBackend, PostgresBackend, PostgresOptions, ReplicationOptions,
    Replicator, SqliteBackend, Store,
};
use tower_ip_allowlist::tenant::{OtherHosts, Tenant, TenantLayer, TenantResolver};

/// Used when `ALLOWLIST_JWT_SECRET` is not set. Anyone can read it here: development only.
const DEV_SECRET: &str = "tower-ip-allowlist-development-secret-do-not-deploy";

#[derive(Debug, Parser)]
#[command(about = "The tower-ip-allowlist demo server", version)]
struct Cli {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where policies are kept: `sqlite://FILE` (created on first use), `memory`, or
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`, shared by several replicas.
    #[arg(long, default_value = "sqlite://allowlist.db")]
    database: String,
    /// A proxy (address, CIDR range or `first-last` range) whose forwarded header is
    /// believed. Repeatable. Without one, forwarded headers are ignored and the client
    /// is the TCP peer.
    #[arg(long = "trusted-proxy", value_name = "ADDR|CIDR")]
    trusted_proxies: Vec<String>,
    /// The header the trusted proxies write: `x-forwarded-for`, `forwarded`,
    /// `x-real-ip`, or another single-address header such as `cf-connecting-ip`.
    #[arg(long, default_value = "x-forwarded-for", value_name = "NAME")]
    forwarded_header: String,
    /// Take the N-th entry from the right of the forwarded header as the client,
    /// instead of the rightmost entry that is not a trusted proxy.
    #[arg(long, value_name = "N")]
    proxy_hops: Option<usize>,
    /// A trusted proxy that sends no forwarded header (its own health checks) is
    /// itself the client. Without this, its address is unknown.
    #[arg(long)]
    proxy_without_header: bool,
    /// Serve one organization per subdomain: `acme.DOMAIN` is organization `acme`,
    /// `DOMAIN` itself (and any other host, IP literals included) the default one.
    /// Without it the server is single-tenant: every request is the default
    /// organization's, and a token of another organization is refused.
    #[arg(long, value_name = "DOMAIN")]
    tenant_domain: Option<String>,
    /// Read the PROXY protocol header (v1 or v2) that the `--trusted-proxy` balancers
    /// send first on each connection; other peers' headers close the connection. The
    /// balancers' forwarded headers are then not read.
    #[arg(long, requires = "trusted_proxies")]
    proxy_protocol: bool,
    /// The HS256 secret tokens are signed with (development mode, and `mint-token`).
    #[arg(long, env = "ALLOWLIST_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,

    /// Verify tokens with the JWK set at this URL instead of the secret (https, or http
    /// on loopback).
    #[arg(long, value_name = "URL", conflicts_with = "oidc_issuer")]
    jwks_url: Option<String>,

    /// Verify tokens of this OpenID Connect issuer, its keys found by discovery,
    /// instead of the secret; `iss` is then required.
    #[arg(long, value_name = "URL")]
    oidc_issuer: Option<String>,

    /// Require this `aud` in tokens.
    #[arg(long, value_name = "AUDIENCE")]
    audience: Option<String>,
    /// Do not accept API tokens (`Authorization: Bearer tia_...`): JWTs only.
    #[arg(long)]
    no_api_tokens: bool,
    /// Seconds a client has to send a request head, from connecting or from the end
    /// of the previous response: also how long an idle keep-alive connection is kept.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = seconds)]
    header_timeout: Duration,
    /// Seconds a request body may pause between two pieces before the request fails.
    #[arg(long, value_name = "SECONDS", default_value = "20", value_parser = seconds)]
    body_timeout: Duration,
    /// Seconds from the end of a request head to the response (receiving the body and
    /// answering); past it the answer is 408 and the connection closes.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    request_timeout: Duration,
    /// Connections served at once; more wait to be accepted until one closes. Keep it
    /// under the descriptor limit (`ulimit -n`).
    #[arg(long, value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: u32,
    /// Seconds a shutdown (SIGTERM, Ctrl-C) waits for requests in flight before
    /// closing what is still open.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds)]
    shutdown_grace: Duration,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a token signed with the server's secret, for trying the API.
    MintToken {
        /// The user id (`sub`).
        #[arg(long)]
        user: String,
        /// The organization (`org`); the default organization if absent.
        #[arg(long)]
        org: Option<String>,
        /// A direct group. Repeatable.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// A permission, such as MANAGE. Repeatable.
        #[arg(long = "permission")]
        permissions: Vec<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (secret, dev_secret) = match &cli.jwt_secret {
        Some(secret) if !secret.is_empty() => (secret.clone(), false),
        _ => (DEV_SECRET.to_owned(), true),
    };
    if let Some(Command::MintToken {
        user,
        org,
        groups,
        permissions,
        ttl,
    }) = &cli.command
    {
        let mut claims = TokenClaims::new(user.as_str(), Duration::from_secs(*ttl))
            .with_groups(groups.iter().cloned())
            .with_permissions(permissions.iter().cloned());
        if let Some(org) = org {
            claims = claims.with_org(org.as_str());
        }
        return match encode_hs256(secret.as_bytes(), &claims) {
            Ok(token) => {
                println!("{token}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    }

    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info".into()),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cli, secret, dev_secret)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The JWT layer: keys from the identity provider when `--jwks-url` or `--oidc-issuer`
/// is given, the HS256 secret otherwise.
async fn authentication(cli: &Cli, secret: &str) -> Result<JwtAuthLayer, String> {
    let layer = if let Some(url) = &cli.jwks_url {
        let keys = RemoteKeys::jwks_url(url.as_str())
            .start()
            .await
            .map_err(|err| format!("--jwks-url: {err}"))?;
        JwtAuthLayer::remote(keys)
    } else if let Some(issuer) = &cli.oidc_issuer {
        let keys = RemoteKeys::oidc_issuer(issuer.as_str())
            .start()
            .await
            .map_err(|err| format!("--oidc-issuer: {err}"))?;
        JwtAuthLayer::remote(keys)
    } else {
        JwtAuthLayer::hs256(secret.as_bytes())
    };
    Ok(match &cli.audience {
        Some(audience) => layer.audience(audience.as_str()),
        None => layer,
    })
}

async fn serve(cli: Cli, secret: String, dev_secret: bool) -> Result<(), String> {
    let tenants = match &cli.tenant_domain {
        None => TenantResolver::single(),
        Some(domain) => TenantResolver::by_host(domain)
            .map_err(|err| format!("--tenant-domain: {err}"))?
            .other_hosts(OtherHosts::DefaultOrganization)
            .build(),
    };
    // With `--proxy-protocol` the listed peers are layer-4 balancers: their PROXY header
    // names the client, and no forwarded header is believed (a client in their range
    // could otherwise write one).
    let resolver = if cli.proxy_protocol {
        ClientIpResolver::peer()
    } else {
        resolver(&cli)?
    };
    let proxy_protocol = cli
        .proxy_protocol
        .then(|| ProxyProtocolConfig::new(&cli.trusted_proxies))
        .transpose()
        .map_err(|err| format!("--trusted-proxy: {err}"))?;
    // Replication runs as long as `replication` lives.
    let (store, replication) = open_store(&cli.database).await?;

    let handle = store.handle().clone();
    let media = Router::new().route(MEDIA, get(media)).route_layer(
        ResourceAllowlistLayer::path_param(handle.clone(), MEDIA, "project")
            .map_err(|err| err.to_string())?,
    );
    let gated = Router::new()
        .route(
            "/api/v1/profile",
            get(profile).route_layer(RequirePrincipalLayer::new()),
        )
        .merge(media)
        .merge(admin::router(store.clone()))
        // Anonymous requests go on (the OpenAPI document and media are public; the lists
        // still apply to them); `/api/v1/profile` requires a caller itself.
        .layer(AllowlistLayer::new(handle.clone()).allow_anonymous())
        .layer(authentication(&cli, &secret).await?);
    // API tokens before JWTs: a `tia_` bearer credential is looked up in the store and
    // removed from the request; anything else goes on to the JWT layer.
    let gated = if cli.no_api_tokens {
        gated
    } else {
        gated.layer(ApiTokenLayer::new(store.clone()))
    };
    let gated = gated
        .layer(SiteAllowlistLayer::new(handle))
        // The tenant, from the host, before authentication: the lists are the tenant's,
        // and a token of another organization is refused.
        .layer(TenantLayer::new(tenants));
    let edge = serving::Edge {
        header_timeout: cli.header_timeout,
        body_timeout: cli.body_timeout,
        request_timeout: cli.request_timeout,
        max_connections: cli.max_connections as usize,
        shutdown_grace: cli.shutdown_grace,
    };
    // The console's files hold no data: served to anyone, like `/health`; its calls to
    // the admin API are what is authenticated and gated. In development mode (the
    // published secret) it offers a button that mints a token for a named user.
    let dev_mode = dev_secret && cli.jwks_url.is_none() && cli.oidc_issuer.is_none();
    let console = if dev_mode {
        let secret = secret.clone();
        Console::new()
            .dev_token_url(DEV_TOKEN_PATH)
            .into_router()
            .route(
                DEV_TOKEN_PATH,
                post(move |body: Json<Value>| dev_token(secret.clone(), body)),
            )
    } else {
        Console::new().into_router()
    };
    // The client address is resolved once, outermost, and every layer, handler and
    // the admin API's lockout guard read that one outcome.
    let app = Router::new()
        .route("/health", get(|| async { "ok" }))
        .merge(console)
        .merge(gated)
        .layer(ClientIpLayer::new(resolver));
    let app = serving::with_deadlines(app, &edge).layer(TraceLayer::new_for_http());

    let listener = TcpListener::bind(cli.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", cli.listen))?;
    let addr = listener
        .local_addr()
        .map_err(|err| format!("cannot read the listening address: {err}"))?;
    // Tests read this line to find the port when started with `--listen 127.0.0.1:0`.
    println!(
        "listening on http://{addr} (database {})",
        redacted(&cli.database)
    );
    if dev_mode {
        tracing::warn!(
            "ALLOWLIST_JWT_SECRET is not set: using the fixed development secret, which anyone can read in the source. Never deploy like this."
        );
        println!(
            "mint a token to try it:\n  TOKEN=$(cargo run --release --example server -- mint-token --user alice --permission MANAGE)\n  curl -H \"Authorization: Bearer $TOKEN\" http://{addr}/api/v1/profile\nor open the console: http://{addr}/console/"
        );
    }
    if let Some(config) = proxy_protocol {
        tracing::info!(
            ?config,
            "reading PROXY protocol headers from the trusted balancers"
        );
        let listener = ProxyProtocolListener::new(listener, config);
        serving::serve(listener, app, edge, shutdown(), |io: &ProxiedStream, _| {
            // The client the header named is the peer (none when it named no address:
            // the allowlist then fails closed), and the balancer stays known.
            let info = *io.info();
            let mut extensions = Extensions::new();
            extensions.insert(info);
            if let Some(client) = info.client {
                extensions.insert(ConnectInfo(client));
            }
            extensions
        })
        .await;
    } else {
        let listener = listener.tap_io(|tcp| {
            if let Err(err) = tcp.set_nodelay(true) {
                tracing::debug!(error = %err, "cannot set TCP_NODELAY");
            }
        });
        serving::serve(listener, app, edge, shutdown(), |_, peer: &SocketAddr| {
            let mut extensions = Extensions::new();
            extensions.insert(ConnectInfo(*peer));
            extensions
        })
        .await;
    }
    if let Some((replicator, backend)) = replication {
        drop(replicator); // stops listening
        backend.close().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// A positive number of seconds, such as `20` or `0.5`.
fn seconds(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    match Duration::try_from_secs_f64(value) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        _ => Err(format!(
            "`{text}` is not a positive number of seconds, such as 20 or 0.5"
        )),
    }
}

/// Where the development mode mints tokens for the console's button.
const DEV_TOKEN_PATH: &str = "/dev/token";

/// How long a development token lasts.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// A token with the manage permission for `{"user": USER}`, signed with the
/// development secret: what `mint-token --user USER --permission MANAGE` prints.
/// Development mode only.
async fn dev_token(secret: String, Json(request): Json<Value>) -> (StatusCode, Json<Value>) {
    let Some(user) = request["user"]
        .as_str()
        .map(str::trim)
        .filter(|user| !user.is_empty())
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "send the user to mint a token for: {\"user\": \"alice\"}"})),
        );
    };
    let claims = TokenClaims::new(user, DEV_TOKEN_TTL).with_permissions(["MANAGE"]);
    match encode_hs256(secret.as_bytes(), &claims) {
        Ok(token) => (StatusCode::OK, Json(json!({ "token": token }))),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({ "error": err.to_string() })),
        ),
    }
}

/// A project's media, guarded by the project's resource allowlist.
const MEDIA: &str = "/api/v1/projects/{project}/media/{file}";

/// Projects belong to the request's tenant, as their resource allowlists do: `apollo`
/// on acme's host is acme's project, and the same path on another host is another
/// organization's (guarded by that organization's list, if it has one). A real
/// application looks the project up in the tenant, never across tenants.
async fn media(tenant: Tenant, Path((project, file)): Path<(String, String)>) -> String {
    format!(
        "media {file} of project {project} of organization {}\n",
        tenant.org()
    )
}

async fn profile(
    Extension(principal): Extension<Principal>,
    token: Option<Extension<ApiTokenAuth>>,
    tenant: Tenant,
    ip: ClientIp,
) -> Json<Value> {
    let mut profile = json!({
        "user": principal.user.as_str(),
        "organization": principal.organization_or_default().as_str(),
        "tenant": tenant.org().as_str(),
        "clientIp": ip.addr.to_string(),
    });
    if let Some(Extension(token)) = token {
        profile["apiToken"] = json!(token.id);
    }
    Json(profile)
}

fn resolver(cli: &Cli) -> Result<ClientIpResolver, String> {
    if cli.trusted_proxies.is_empty() {
        return Ok(ClientIpResolver::peer());
    }
    let header = ForwardedHeader::single(&cli.forwarded_header)
        .map_err(|err| format!("--forwarded-header: {err}"))?;
    let mut proxies = ClientIpResolver::trusted_proxies(&cli.trusted_proxies)
        .map_err(|err| format!("--trusted-proxy: {err}"))?
        .header(header.clone())
        .peer_without_header(cli.proxy_without_header);
    if let Some(hops) = cli.proxy_hops {
        proxies = proxies
            .hop_count(hops)
            .map_err(|err| format!("--proxy-hops: {err}"))?;
    }
    tracing::info!(
        proxies = ?cli.trusted_proxies,
        header = %header.name(),
        hops = ?cli.proxy_hops,
        "trusting forwarded headers from these proxies"
    );
    Ok(proxies.build())
}

/// The store, and for PostgreSQL the replicator that keeps it in step with the other
/// replicas. A PostgreSQL replica loads its policies in the background, so it serves
/// (`/health`, and 503 on the gated routes) even while the database is down.
async fn open_store(url: &str) -> Result<(Store, Option<(Replicator, PostgresBackend)>), String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let backend = PostgresOptions::new(url)
            .map_err(|err| err.to_string())?
            .connect_lazy();
        let store = Store::unloaded(
            Arc::new(backend.clone()),
            SnapshotHandle::default(),
            Limits::default(),
        );
        let replicator = backend.replicate(&store, ReplicationOptions::default());
        return Ok((store, Some((replicator, backend))));
    }
    let backend = backend(url).await?;
    let store = Store::open(backend, SnapshotHandle::default(), Limits::default())
        .await
        .map_err(|err| format!("cannot load policies from {url}: {err}"))?;
    Ok((store, None))
}

/// `url` without its password, for printing.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        _ => url.to_owned(),
    }
}

async fn backend(url: &str) -> Result<Arc<dyn Backend>, String> {
    if url == "memory" {
        return Ok(Arc::new(MemoryBackend::new()));
    }
    if url.starts_with("sqlite:") {
        let backend = SqliteBackend::open(url)
            .await
            .map_err(|err| err.to_string())?;
        return Ok(Arc::new(backend));
    }
    Err(format!(
        "--database `{}` is not supported: use sqlite://FILE, postgres://USER@HOST/DATABASE or memory",
        redacted(url)
    ))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutdown requested");
}
