//! The admin page in a real browser: Debian's headless `chromium` driven through `chromedriver` (WebDriver). Signs
//! in with a token, sees the jobs, runs one now and watches its run appear, pauses and resumes it, composes a
//! segment campaign and sees the live audience count, opens the partner chart and the audit log. Screenshots of
//! each step land in `target/tmp/admin-ui-screenshots/`.
//!
//! Without the browser installed the test says so and passes, except under CI (`CI` set), where `.ci/run` installs
//! it and its absence is a failure.

use crate::common;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{AdminServer, TOKEN, user_with_token};
use testkit::webdriver::{Browser, find_browser};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_steers_hattrick_from_the_page() {
    let Some((chromium, chromedriver)) = find_browser() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium and chromedriver are required under CI (apt install chromium chromium-driver)"
        );
        eprintln!("SKIPPED: chromium or chromedriver not installed (apt install chromium chromium-driver)");
        return;
    };
    let server = AdminServer::start().await;
    for platform in ["ios", "ios", "android"] {
        user_with_token(&server.db, platform).await;
    }
    let owner = server.db.user().await;
    let partner: uuid::Uuid = db::query_scalar(
        "INSERT INTO partners (customer_user_id, business_name, email, phone, status, referral_code)
         VALUES ($1, 'Beşiktaş Taraftar', 'p@example.com', '555', 'approved', 'BJK') RETURNING id",
    )
    .bind(owner)
    .fetch_one(server.db.pool())
    .await
    .unwrap();
    let yesterday = Utc::now().date_naive() - TimeDelta::days(1);
    db::query(
        "INSERT INTO partner_analytics (partner_id, date, new_signups, new_subscriptions, revenue, commission,
                                        active_subscribers)
         SELECT $1, d::date, 3, 1, 50 + extract(day FROM d) * 10, 10 + extract(day FROM d) * 2, 20
         FROM generate_series($2::date - 29, $2::date, '1 day') d",
    )
    .bind(partner)
    .bind(yesterday)
    .execute(server.db.pool())
    .await
    .unwrap();

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("admin-ui-screenshots");
    let browser = Browser::start(&chromium, &chromedriver).await;
    let shot = |name: &str| shots.join(format!("{name}.png"));

    // Sign in.
    browser.goto(&server.url("/admin/ui")).await;
    assert!(browser.url().await.ends_with("/admin/ui/login"));
    browser.screenshot(&shot("01-sign-in")).await;
    let token = browser.find("#token").await;
    browser.type_text(&token, "not-the-token").await;
    browser.click(&browser.find("#sign-in").await).await;
    browser.wait_for_text("#error", Duration::from_secs(10), |t| t.contains("not valid")).await;
    let token = browser.find("#token").await;
    browser.type_text(&token, TOKEN).await;
    browser.click(&browser.find("#sign-in").await).await;

    // The jobs.
    browser.find("table#jobs tr[data-job='badge-auto-unlock']").await;
    assert!(browser.url().await.ends_with("/admin/ui"));
    assert_eq!(browser.find_all("table#jobs tbody tr").await.len(), hattrick::registry::JOBS.len());
    assert_eq!(browser.text(&browser.find("#actor").await).await, "ops");
    browser.screenshot(&shot("02-jobs")).await;

    // Run one now and watch its run appear and finish.
    browser.click(&browser.find("tr[data-job='streak-reset'] button.run").await).await;
    browser.wait_for_text("#notice", Duration::from_secs(10), |t| t.starts_with("Started streak-reset")).await;
    browser.find("#runs tr[data-run]").await;
    browser.wait_for_text("#runs tr[data-run] .state", Duration::from_secs(20), |t| t == "success").await;
    browser.screenshot(&shot("03-run-now")).await;

    // Pause and resume.
    browser.goto(&server.url("/admin/ui")).await;
    browser.click(&browser.find("tr[data-job='streak-reset'] button.pause").await).await;
    browser.wait_for_text("#notice", Duration::from_secs(10), |t| t == "Paused streak-reset").await;
    assert_eq!(browser.text(&browser.find("tr[data-job='streak-reset'] .state").await).await, "paused");
    browser.screenshot(&shot("04-paused")).await;
    browser.click(&browser.find("tr[data-job='streak-reset'] button.resume").await).await;
    browser.wait_for_text("#notice", Duration::from_secs(10), |t| t == "Resumed streak-reset").await;
    assert_eq!(browser.text(&browser.find("tr[data-job='streak-reset'] .state").await).await, "active");
    assert_eq!(server.get("/admin/jobs/streak-reset").await.1["state"], "active");

    // Compose a segment campaign: the audience count follows the filter as it is typed.
    browser.goto(&server.url("/admin/ui/campaigns")).await;
    browser.wait_for_text("#audience", Duration::from_secs(10), |t| t == "4 users").await;
    browser.click(&browser.find("#target_audience option[value='segment']").await).await;
    browser.type_text(&browser.find("#segment_filter").await, r#"{"platform": "ios"}"#).await;
    browser.wait_for_text("#audience", Duration::from_secs(10), |t| t == "2 users").await;
    browser.type_text(&browser.find("#title_tr").await, "Derbi akşamı").await;
    browser.type_text(&browser.find("#body_tr").await, "Tahminini yap, kredileri kap").await;
    browser.screenshot(&shot("05-composer")).await;
    browser.click(&browser.find("#create").await).await;
    browser.wait_for_text("#notice", Duration::from_secs(10), |t| t == "Campaign created").await;
    assert_eq!(browser.text(&browser.find("#status").await).await, "pending");
    browser.screenshot(&shot("06-campaign")).await;
    let (_, campaigns) = server.get("/admin/campaigns").await;
    assert_eq!(campaigns[0]["segment_filter"], serde_json::json!({"platform": "ios"}));

    // The partner chart over the last 30 days.
    browser.goto(&server.url("/admin/ui/partners")).await;
    browser.find("svg#partner-chart").await;
    assert_eq!(browser.find_all("svg#partner-chart rect").await.len(), 30);
    let table = browser.text(&browser.find("table#partners").await).await;
    assert!(table.contains("Beşiktaş Taraftar"), "{table}");
    browser.screenshot(&shot("07-partners")).await;

    // Everything above is in the audit log, under the operator's name.
    browser.goto(&server.url("/admin/ui/audit")).await;
    let audit = browser.text(&browser.find("table#audit").await).await;
    for action in ["job.run", "job.pause", "job.resume", "campaign.create"] {
        assert!(audit.contains(action), "{action} missing from {audit}");
    }
    browser.screenshot(&shot("08-audit")).await;

    // Signing out ends the session.
    browser.goto(&server.url("/admin/ui")).await;
    browser.click(&browser.find("header form button").await).await;
    browser.find("#token").await;
    browser.goto(&server.url("/admin/ui")).await;
    assert!(browser.url().await.ends_with("/admin/ui/login"));
    eprintln!("screenshots in {}", shots.display());
    browser.quit().await;
    server.stop().await;
}
