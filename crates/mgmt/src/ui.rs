//! The web UI: a single page (HTML, one script, one stylesheet) compiled into the binary and
//! served at `/` on the management port. It calls the HTTP API with basic auth, as
//! RabbitMQ's UI does; there is no build step and nothing to install.

use std::sync::Arc;

use axum::http::header;
use axum::routing::get;
use axum::Router;
use warren_broker::Broker;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &str = include_str!("../ui/app.js");
const STYLE: &str = include_str!("../ui/style.css");

/// Path, content type and body of every asset (`/` is the page itself).
const ASSETS: [(&str, &str, &str); 4] = [
    ("/", "text/html; charset=utf-8", INDEX),
    ("/index.html", "text/html; charset=utf-8", INDEX),
    ("/app.js", "text/javascript; charset=utf-8", SCRIPT),
    ("/style.css", "text/css; charset=utf-8", STYLE),
];

pub fn routes() -> Router<Arc<Broker>> {
    ASSETS
        .iter()
        .fold(Router::new(), |router, &(path, content_type, body)| {
            router.route(
                path,
                get(move || async move {
                    (
                        [
                            (header::CONTENT_TYPE, content_type),
                            // Assets change with the binary; revalidate so an upgrade shows.
                            (header::CACHE_CONTROL, "no-cache"),
                        ],
                        body,
                    )
                }),
            )
        })
}
