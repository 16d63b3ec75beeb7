//! Discovery and keys against a small provider served here: cached, refetched only when
//! allowed, failures not retried at once; and the HTTP client's bounds.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use openidconnect::{AsyncHttpClient, IssuerUrl};
use serde_json::json;

use super::super::http::{BoundedHttp, HttpError};
use super::*;

#[derive(Clone, Default)]
struct Hits {
    discovery: Arc<AtomicUsize>,
    keys: Arc<AtomicUsize>,
}

/// A provider on a loopback port: its issuer URL and its request counts.
async fn provider() -> (String, Hits) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let hits = Hits::default();
    let base = issuer.clone();
    let app = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(move |State(hits): State<Hits>| {
                let base = base.clone();
                async move {
                    hits.discovery.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({
                        "issuer": base,
                        "authorization_endpoint": format!("{base}/auth"),
                        "token_endpoint": format!("{base}/token"),
                        "jwks_uri": format!("{base}/jwks"),
                        "response_types_supported": ["code"],
                        "subject_types_supported": ["public"],
                        "id_token_signing_alg_values_supported": ["RS256"],
                    }))
                }
            }),
        )
        .route(
            "/jwks",
            get(|State(hits): State<Hits>| async move {
                hits.keys.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({ "keys": [] }))
            }),
        )
        .route("/big", get(|| async { "x".repeat(300 * 1024) }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .with_state(hits.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (issuer, hits)
}

fn http() -> BoundedHttp {
    BoundedHttp::new(Duration::from_secs(1)).unwrap()
}

#[tokio::test]
async fn discovery_is_cached_and_keys_are_refetched_at_most_once_an_interval() {
    let (issuer, hits) = provider().await;
    let issuer = IssuerUrl::new(issuer).unwrap();
    let discovery = Discovery::default();
    discovery.metadata(&issuer, &http()).await.unwrap();
    discovery.metadata(&issuer, &http()).await.unwrap();
    assert_eq!(hits.discovery.load(Ordering::SeqCst), 1);
    assert_eq!(hits.keys.load(Ordering::SeqCst), 1);
    // An unknown key id right after discovery: not fetched again.
    for _ in 0..5 {
        assert!(discovery.refetch_keys(&http()).await.is_none());
    }
    assert_eq!(hits.keys.load(Ordering::SeqCst), 1);

    let eager = Discovery {
        cache: Mutex::default(),
        key_refetch_interval: Duration::ZERO,
    };
    assert!(
        eager.refetch_keys(&http()).await.is_none(),
        "no discovery yet"
    );
    eager.metadata(&issuer, &http()).await.unwrap();
    assert!(eager.refetch_keys(&http()).await.is_some());
    assert_eq!(hits.keys.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failed_discovery_is_not_retried_at_once() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let issuer = IssuerUrl::new(format!("http://127.0.0.1:{port}")).unwrap();
    let discovery = Discovery::default();
    let first = discovery.metadata(&issuer, &http()).await.unwrap_err();
    assert!(first.contains("discovery failed"), "{first}");
    let second = discovery.metadata(&issuer, &http()).await.unwrap_err();
    assert!(second.contains("not retried yet"), "{second}");
}

#[tokio::test]
async fn answers_are_bounded_in_size_and_time() {
    let (issuer, _) = provider().await;
    let get = |path: &str| {
        openidconnect::http::Request::builder()
            .uri(format!("{issuer}{path}"))
            .body(Vec::new())
            .unwrap()
    };
    assert!(matches!(
        http().call(get("/big")).await,
        Err(HttpError::TooLarge)
    ));
    let started = Instant::now();
    assert!(matches!(
        http().call(get("/slow")).await,
        Err(HttpError::Unreachable(_))
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(http().call(get("/jwks")).await.is_ok());
}
