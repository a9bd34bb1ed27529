//! The docs page in a real browser, as ops use it: headless Chromium (Debian's `chromium` and
//! `chromium-driver`; `scripts/ensure-chromium` installs them) opens `/docs/`, waits for the
//! operations list, authorizes with a customer token, runs `GET /v1/catalog` from the page and
//! sees 200 in the rendered response. Our Content-Security-Policy must let Swagger UI do all of
//! it.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use sqlx::PgPool;

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn chromedriver() -> Driver {
    let port = testkit::process::free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver runs (scripts/ensure-chromium installs it)");
    let url = format!("http://127.0.0.1:{port}");
    testkit::process::wait_ok(&format!("{url}/status"), Duration::from_secs(20)).await;
    Driver { child, url }
}

/// Waits for the element `css` selects and clicks it.
async fn click(browser: &fantoccini::Client, css: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

#[sqlx::test(migrator = "domain::MIGRATOR")]
async fn the_docs_page_authorizes_and_runs_a_request_in_chromium(pool: PgPool) {
    let app = testkit::spawn_app(pool).await;
    let token = app.customer_token("browser-customer");
    let driver = chromedriver().await;
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1400,2000"],
        }),
    );
    let browser = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a Chromium session");
    let wait = || browser.wait().at_most(Duration::from_secs(30));

    browser
        .goto(&format!("{}/docs", app.address))
        .await
        .unwrap();
    // `/docs` redirected to the page, which rendered the operations list from /openapi.json.
    assert!(
        browser
            .current_url()
            .await
            .unwrap()
            .path()
            .ends_with("/docs/")
    );
    let operation = "#operations-catalog-list_catalog";
    wait()
        .for_element(Locator::Css(operation))
        .await
        .expect("the operations list");

    // Authorize with the customer's bearer token.
    click(&browser, "button.authorize").await;
    let field = wait()
        .for_element(Locator::Css(".auth-container input"))
        .await
        .unwrap();
    field.send_keys(&token).await.unwrap();
    click(&browser, ".auth-btn-wrapper button.authorize").await;
    click(&browser, "button.btn-done").await;

    // Open GET /v1/catalog, try it out, execute.
    click(&browser, &format!("{operation} .opblock-summary-control")).await;
    click(&browser, &format!("{operation} button.try-out__btn")).await;
    click(&browser, &format!("{operation} button.execute")).await;
    let status = wait()
        .for_element(Locator::Css(&format!(
            "{operation} .live-responses-table .response .response-col_status"
        )))
        .await
        .expect("a rendered response");
    assert_eq!(status.text().await.unwrap().trim(), "200");
    let body = browser
        .find(Locator::Css(&format!(
            "{operation} .live-responses-table .response-col_description pre"
        )))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("instagram-manager"),
        "the catalog rendered: {body}"
    );
    browser.close().await.unwrap();
}
