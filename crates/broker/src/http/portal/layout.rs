//! The frame every portal page shares: the document head (title, icon, style sheet,
//! script) and the top bar.

use maud::{DOCTYPE, Markup, html};

use super::assets;

/// A whole page titled `title`, with `header` on the top bar's right and `body` in `main`.
pub(super) fn page(title: &str, header: Option<Markup>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Portcullis" }
                link rel="icon" type="image/svg+xml" href=(assets::FAVICON.url());
                link rel="stylesheet" href=(assets::STYLE.url());
                script src=(assets::SCRIPT.url()) defer {}
            }
            body {
                header.top {
                    a.brand href="/" { "Portcullis" }
                    @if let Some(header) = header { (header) }
                }
                main { (body) }
            }
        }
    }
}
