//! What the tests of the `portcullis` binary share.

pub(crate) mod oidc_provider;
pub(crate) mod operator;
pub(crate) mod page_checks;
mod process;
pub(crate) mod webdriver;

pub(crate) use process::{interrupt, run, start_dev, stdout, wait_healthy, wait_with_timeout};
