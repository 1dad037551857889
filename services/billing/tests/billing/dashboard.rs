//! The dashboard page in a real headless Chromium against a running billing:
//! the numbers it renders and the chart it draws.

use std::{path::PathBuf, time::Duration};

use anyhow::{Context, bail};
use vigil_core::ProviderId;
use vigil_proto::v1;
use vigil_testkit::wait_until;

use crate::support::{AUTH_SUBJECT, Billing, PATIENCE, Stack, TOKEN, authentication, local, utc};

/// Debian's `chromium`. Missing is a failure, never a skip: the dashboard
/// must be shown to render.
fn chromium() -> anyhow::Result<PathBuf> {
    let candidates = [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ];
    if let Some(path) = std::env::var_os("VIGIL_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("headless Chromium is required for the dashboard test: install Debian's `chromium` (apt-get install chromium), or point VIGIL_CHROMIUM at a Chromium binary")
}

/// The DOM after the page's scripts ran.
async fn rendered_dom(url: &str) -> anyhow::Result<String> {
    let profile = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(chromium()?);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-proxy-server",
            "--virtual-time-budget=15000",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(url)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(90), command.output())
        .await
        .context("chromium did not finish within 90 s")??;
    if !output.status.success() {
        bail!(
            "chromium failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

async fn screenshot(url: &str, path: &std::path::Path) -> anyhow::Result<()> {
    let profile = tempfile::tempdir()?;
    let status = tokio::process::Command::new(chromium()?)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,800",
            "--virtual-time-budget=15000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", path.display()))
        .arg(url)
        .kill_on_drop(true)
        .status()
        .await?;
    anyhow::ensure!(status.success(), "chromium screenshot failed: {status}");
    Ok(())
}

/// The text of the element with `id` (no nested tags).
fn text_of<'a>(dom: &'a str, id: &str) -> Option<&'a str> {
    let start = dom.find(&format!("id=\"{id}\""))?;
    let open_end = dom[start..].find('>')? + start + 1;
    let close = dom[open_end..].find('<')? + open_end;
    Some(&dom[open_end..close])
}

/// `(day, value)` of every bar in the chart.
fn bars(dom: &str) -> Vec<(String, i64)> {
    dom.split("<rect")
        .skip(1)
        .filter(|r| r.contains("class=\"bar\""))
        .filter_map(|r| {
            let attr = |name: &str| {
                let at = r.find(&format!("{name}=\""))? + name.len() + 2;
                Some(r[at..].split('"').next()?.to_owned())
            };
            Some((attr("data-day")?, attr("data-value")?.parse().ok()?))
        })
        .collect()
}

#[tokio::test]
async fn dashboard_renders_usage_model_estimate_and_chart_in_chromium() -> anyhow::Result<()> {
    // Fails loudly before any set-up if the browser is missing.
    chromium()?;
    local(async {
        let stack = Stack::start().await?;
        let billing = Billing::start(&stack).await?;
        let a = ProviderId::new().to_string();
        stack.create_provider(&a, v1::UsageModel::PerAuthentication).await?;
        // March (now is the 20th): 3 on the 2nd, 1 on the 10th, 5 on the 19th.
        let mut last = 0;
        for (day, count) in [(2, 3), (10, 1), (19, 5)] {
            for i in 0..count {
                let at = utc(2025, 3, day, 8, i, 0)?;
                last = stack
                    .publish(AUTH_SUBJECT, &authentication(&a, Some(at), at), None)
                    .await?;
            }
        }
        stack.wait_drained("VIGIL_USAGE", "billing-usage", last).await?;
        wait_until(PATIENCE, "provider A to be known", || async {
            let (_, body) = stack.usage(&billing, &a, &[]).await?;
            anyhow::Ok(body["usage_model"].is_string().then_some(()))
        })
        .await?;
        let rates = serde_json::json!({
            "currency": "EUR",
            "per_authentication": "0.125",
            "per_enabled_user_month": "2",
            "per_sms_segment": "0.01",
            "per_voice_minute": "0.02",
        });
        stack.put_rates(&billing, &a, &rates).await?;
        // The dashboard reads with the provider's own read-only token.
        let (_, token) = stack.issue_token(&billing, &a).await?;
        assert_ne!(token, TOKEN);

        let url = format!("{}/dashboard#provider={a}&token={token}", billing.base);
        let dom = rendered_dom(&url).await?;
        assert!(
            dom.contains("data-state=\"ready\""),
            "the page did not finish loading:\n{dom}"
        );
        assert_eq!(text_of(&dom, "model"), Some("per_authentication"), "{dom}");
        assert_eq!(text_of(&dom, "provider"), Some(a.as_str()));
        assert_eq!(text_of(&dom, "period"), Some("2025-03"));
        assert_eq!(text_of(&dom, "units"), Some("9"));
        // 9 × 0.125 = 1.125 → 1.13
        assert_eq!(text_of(&dom, "estimate-total"), Some("1.13"), "{dom}");
        assert_eq!(text_of(&dom, "currency"), Some("EUR"));
        let bars = bars(&dom);
        assert_eq!(bars.len(), 31, "one bar per day of March: {bars:?}");
        let value = |day: &str| bars.iter().find(|(d, _)| d == day).map(|(_, v)| *v);
        assert_eq!(value("2025-03-02"), Some(3));
        assert_eq!(value("2025-03-10"), Some(1));
        assert_eq!(value("2025-03-19"), Some(5));
        assert_eq!(bars.iter().map(|(_, v)| v).sum::<i64>(), 9);
        assert!(dom.contains("data-max=\"5\""), "the chart scales to its tallest bar");

        // `VIGIL_DASHBOARD_SCREENSHOT=/tmp/dashboard.png` keeps a picture to look at.
        if let Some(path) = std::env::var_os("VIGIL_DASHBOARD_SCREENSHOT") {
            screenshot(&url, &PathBuf::from(path)).await?;
        }

        // A wrong token shows an error, not numbers.
        let dom = rendered_dom(&format!("{}/dashboard#provider={a}&token=wrong", billing.base)).await?;
        assert!(dom.contains("data-state=\"error\""), "{dom}");
        assert!(
            text_of(&dom, "error").is_some_and(|e| e.contains("bearer token")),
            "{dom}"
        );
        billing.stop().await
    })
    .await
}
