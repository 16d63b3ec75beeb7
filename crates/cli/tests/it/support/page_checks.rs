//! What every portal page must pass in a real browser: a keyboard user reaches each of its
//! controls with Tab, and the window's width (a phone's, half a screen) shows all of it.
//! The checks run in the page: `page_checks.js`.

use serde_json::json;

use super::webdriver::Browser;

/// The checks, run in the page as a function of the check's name and its limits.
const SCRIPT: &str = include_str!("page_checks.js");

/// The smallest height of a button, field or disclosure (WCAG 2.2's minimum target size).
const MIN_TARGET_PX: u32 = 24;
/// The smallest width of a text field: room for about 18 characters.
const MIN_FIELD_PX: u32 = 150;
/// The width of a choice list's arrow, which its text may not run under.
const ARROW_PX: u32 = 20;

/// Pressing Tab from the top of the page focuses every visible control of the page (every
/// link, button, field and disclosure that is drawn and not disabled).
pub(crate) async fn assert_tab_reaches_every_control(browser: &Browser, page: &str) {
    browser
        .execute("document.activeElement && document.activeElement.blur();")
        .await;
    let controls = browser.execute_with(SCRIPT, json!(["mark", {}])).await;
    let controls: Vec<String> = serde_json::from_value(controls).unwrap();
    assert!(
        controls.len() >= 3,
        "{page} has too few controls: {controls:?}"
    );
    let mut reached = Vec::new();
    for _ in 0..controls.len() + 2 {
        browser.press_tab().await;
        let focused = browser
            .execute(
                "return document.activeElement && document.activeElement.dataset.tabProbe || null;",
            )
            .await;
        if let Some(probe) = focused.as_str() {
            if !reached.iter().any(|seen| seen == probe) {
                reached.push(probe.to_owned());
            }
        }
    }
    let mut sorted = reached.clone();
    sorted.sort();
    let mut expected = controls.clone();
    expected.sort();
    if sorted != expected {
        let missed = browser
            .execute_with(
                "return Array.from(document.querySelectorAll('[data-tab-probe]'))\n\
                     .filter((e) => !arguments[0].includes(e.dataset.tabProbe))\n\
                     .map((e) => e.outerHTML.slice(0, 160));",
                json!([reached]),
            )
            .await;
        panic!("on {page}, Tab never reached these controls: {missed:#}");
    }
    // The last control keeps no focus ring into later screenshots.
    browser
        .execute("document.activeElement && document.activeElement.blur();")
        .await;
}

/// The page, in the window's current width, shows all of itself: the page does not scroll
/// sideways (a box may scroll sideways inside itself), no text runs past the window's edge
/// or out of a box that hides its overflow, and every control lies inside the window,
/// uncovered, big enough to hit; a text field is wide enough to type in and a choice list
/// shows each choice whole.
pub(crate) async fn assert_fits_the_window(browser: &Browser, page: &str) {
    let limits = json!({
        "minTargetPx": MIN_TARGET_PX,
        "minFieldPx": MIN_FIELD_PX,
        "arrowPx": ARROW_PX,
    });
    let problems = browser.execute_with(SCRIPT, json!(["fits", limits])).await;
    let problems: Vec<String> = serde_json::from_value(problems).unwrap();
    let width = browser
        .execute("return document.documentElement.clientWidth;")
        .await;
    assert!(
        problems.is_empty(),
        "{page} does not fit a {width} px window:\n  {}",
        problems.join("\n  ")
    );
}

/// Opens every closed `<details>` of the page (a keyboard user opens one with Enter on its
/// `<summary>`), so that the checks reach what they hold: how many there were.
pub(crate) async fn open_every_disclosure(browser: &Browser) -> u64 {
    browser
        .execute(
            "const closed = Array.from(document.querySelectorAll('details:not([open])'));\n\
             closed.forEach((details) => { details.open = true; });\n\
             return closed.length;",
        )
        .await
        .as_u64()
        .unwrap_or_default()
}
