//! The signing key: its fingerprint and public key, and what rotating it means for
//! launchers. Rotation is done where the key lives, on each broker's host (one page of one
//! broker cannot replace the key file of the others, and a broker loads its key at start).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use maud::html;

use super::{Section, admin, admin_page};
use crate::http::portal::headers::respond;
use crate::keys::{PublicKeyInfo, key_path};
use crate::state::AppState;

/// `GET /admin/key`.
pub(super) async fn page(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let admin = match admin(&state, &headers).await {
        Ok(admin) => admin,
        Err(response) => return response,
    };
    let key = PublicKeyInfo::new(state.signing_key.verifying_key());
    let path = key_path(&state.config.data_dir);
    let body = html! {
        p {
            "The broker signs every launcher script and every connection's instructions with \
             this ML-DSA-65 key. Launchers pin it per broker at their first contact: users \
             compare the fingerprint below with the one their launcher shows."
        }
        h2 { "Fingerprint (SHA-256 of the public key)" }
        pre #key-fingerprint .wrap { (key.fingerprint) }
        h2 { "Public key (base64)" }
        pre #key-public .wrap { (key.public_key_b64) }
        p {
            "Pin it ahead of time with "
            code { "portcullis-launcher trust add " (state.config.public_url().launch_host()) " KEY" }
            "."
        }
        h2 { "Rotating the key" }
        p {
            "A launcher that pinned this key refuses every broker answer signed with another: it \
             cannot tell a rotation from an attack, and says so with both fingerprints (exit \
             code 9). So a rotation is an announced event:"
        }
        ol {
            li {
                "On a broker's host run " code { "portcullis admin -c broker.toml keys init --force" }
                ". It keeps the old key as " code { "signing-key.<time>.old" } " beside "
                code { (path.display().to_string()) } " and prints the new fingerprint."
            }
            li {
                "Copy the new " code { "signing-key" } " (mode 0600) to every broker of the \
                 database and restart them all: launchers must get the same key from each."
            }
            li {
                "Tell every user the new fingerprint: each runs "
                code { "portcullis-launcher trust remove " (state.config.public_url().launch_host()) }
                " and trusts the new key at the next connection (or "
                code { "trust add" } " with the new public key)."
            }
            li { "Delete the " code { ".old" } " file once you no longer need to go back." }
        }
        p.meta {
            "This page has no rotate button on purpose: a broker loads its key at start, and \
             several brokers must share one key file, which only their hosts can replace."
        }
    };
    respond(StatusCode::OK, admin_page(&admin, Section::Key, None, body))
}
