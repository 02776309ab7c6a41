//! The admin API over a real socket: authentication on every route, validation with paths, 404s, 5xx bodies
//! without internal detail, the OpenAPI document against its snapshot and the routes, metrics that move, and
//! the operator actions through the ledger with their audit records.

use crate::common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::Timelike as _;
use common::{AdminServer, OTHER_TOKEN, TOKEN, form_body, send, user_with_token};
use hattrick::config::{HumanDuration, Secret};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

/// Every (method, path) the OpenAPI document lists, with path parameters filled with `filler`.
fn documented_routes(filler: &str) -> Vec<(Method, String)> {
    let document = serde_json::to_value(admin::api::openapi()).unwrap();
    let mut routes = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let method = match method.as_str() {
                "get" => Method::GET,
                "post" => Method::POST,
                "delete" => Method::DELETE,
                "put" => Method::PUT,
                "patch" => Method::PATCH,
                _ => continue,
            };
            let mut concrete = String::new();
            for segment in path.split('/').filter(|s| !s.is_empty()) {
                concrete.push('/');
                concrete.push_str(if segment.starts_with('{') { filler } else { segment });
            }
            routes.push((method, concrete));
        }
    }
    assert!(routes.len() >= 20, "the document lists the API's routes: {routes:?}");
    routes
}

#[tokio::test]
async fn every_route_refuses_a_missing_or_wrong_token() {
    let server = AdminServer::start().await;
    for (method, path) in documented_routes(&Uuid::new_v4().to_string()) {
        let url = server.url(&path);
        let (status, body) = send(server.http.request(method.clone(), &url).json(&json!({}))).await;
        assert_eq!(status, 401, "{method} {path} without a token: {body}");
        assert_eq!(body["error"], "unauthorized");
        for wrong in ["Bearer nope", &format!("Bearer {TOKEN}x"), &format!("Basic {TOKEN}"), TOKEN] {
            let request = server.http.request(method.clone(), &url).header("authorization", wrong).json(&json!({}));
            let (status, _) = send(request).await;
            assert_eq!(status, 401, "{method} {path} with {wrong:?}");
        }
    }
    // Health, readiness and metrics are open (for probes and Prometheus).
    for path in ["/healthz", "/readyz", "/metrics"] {
        assert_eq!(server.http.get(server.url(path)).send().await.unwrap().status(), 200, "{path}");
    }
}

#[tokio::test]
async fn openapi_document_matches_its_snapshot_and_the_routes_served() {
    let server = AdminServer::start().await;
    let (status, document) = server.get("/admin/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(document, serde_json::to_value(admin::api::openapi()).unwrap());

    // The snapshot: a change to the API shows up in review as a change to this file.
    let snapshot_path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../admin/openapi.json");
    let pretty = serde_json::to_string_pretty(&document).unwrap() + "\n";
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&snapshot_path, &pretty).unwrap();
    }
    let snapshot = std::fs::read_to_string(&snapshot_path).expect("crates/admin/openapi.json (UPDATE_SNAPSHOTS=1)");
    assert!(snapshot == pretty, "the OpenAPI document changed; review it and run with UPDATE_SNAPSHOTS=1");

    // Valid: OpenAPI 3.1, every operation answers something, every reference resolves, bearer auth declared.
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"), "{}", document["openapi"]);
    assert!(document["info"]["title"].is_string() && document["info"]["version"].is_string());
    assert_eq!(document["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let schemas = document["components"]["schemas"].as_object().unwrap();
    let mut references = BTreeSet::new();
    collect_refs(&document, &mut references);
    assert!(!references.is_empty());
    for reference in references {
        let name = reference.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("{reference}"));
        assert!(schemas.contains_key(name), "{reference} does not resolve");
    }
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path} has no responses");
            for (status, response) in responses {
                assert!(
                    response["description"].is_string(),
                    "{method} {path} {status}: a response needs a description"
                );
            }
            let parameters: BTreeSet<String> = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            let placeholders: BTreeSet<String> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(str::to_owned)
                .collect();
            assert_eq!(parameters, placeholders, "{method} {path}: path parameters documented");
        }
    }

    // Matches the routes: each documented operation is served (a handler's 404 says what is missing; the
    // router's own 404 or 405 would mean a documented route that does not exist).
    for (method, path) in documented_routes(&Uuid::new_v4().to_string()) {
        let response = server.request(method.clone(), &path).json(&json!({})).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path} is documented but not routed");
        if status == 404 {
            assert_eq!(body["error"], "not_found", "{method} {path} is documented but not routed");
        }
    }
    server.stop().await;
}

fn collect_refs(value: &Value, into: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                if key == "$ref" {
                    into.insert(value.as_str().unwrap().to_owned());
                } else {
                    collect_refs(value, into);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, into)),
        _ => {}
    }
}

#[tokio::test]
async fn jobs_run_now_pause_and_resume_are_audited_by_name() {
    let server = AdminServer::start().await;
    let (status, jobs) = server.get("/admin/jobs").await;
    assert_eq!(status, 200);
    let names: Vec<&str> = jobs.as_array().unwrap().iter().map(|j| j["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), hattrick::registry::JOBS.len(), "{names:?}");
    let job = &jobs[names.iter().position(|n| *n == "streak-reset").unwrap()];
    assert_eq!(job["state"], "active");
    assert_eq!(job["next_runs"].as_array().unwrap().len(), 3);

    assert_eq!(server.get("/admin/jobs/no-such-job").await.0, 404);
    assert_eq!(server.get("/admin/jobs/no-such-job/runs").await.0, 404);
    assert_eq!(server.post("/admin/jobs/no-such-job/run", json!({})).await.0, 404);
    assert_eq!(server.post("/admin/jobs/no-such-job/pause", json!({})).await.0, 404);
    assert_eq!(server.get(&format!("/admin/runs/{}", Uuid::new_v4())).await.0, 404);
    assert_eq!(server.get("/admin/runs/not-a-uuid").await.0, 404);
    let (status, body) = server.get("/admin/jobs/streak-reset/runs?limit=0").await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("limit")), "{body}");
    let (status, body) = server.get("/admin/jobs/streak-reset/runs?before=yesterday").await;
    assert_eq!(status, 422, "{body}");

    // A dry run answers with its report and writes nothing.
    let (status, dry) = server.post("/admin/jobs/streak-reset/run?dry_run=true", json!({})).await;
    assert_eq!(status, 200, "{dry}");
    assert_eq!((dry["dry_run"].as_bool(), dry["outcome"].as_str()), (Some(true), Some("success")));
    assert_eq!(server.get("/admin/jobs/streak-reset/runs").await.1, json!([]));

    // Run now: 202 at once, the run appears and ends.
    let response = server.request(Method::POST, "/admin/jobs/streak-reset/run").send().await.unwrap();
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"].to_str().unwrap().to_owned();
    let started: Value = response.json().await.unwrap();
    let run_id = started["run_id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/admin/runs/{run_id}"));
    let run = server.wait_for_run(&run_id).await;
    assert_eq!((run["status"].as_str(), run["trigger"].as_str()), (Some("success"), Some("manual")), "{run}");
    assert!(run["details"].is_object(), "{run}");
    let (_, runs) = server.get("/admin/jobs/streak-reset/runs").await;
    assert_eq!(runs[0]["id"], run_id.as_str());

    // A job that is running is not started again.
    db::query(
        "INSERT INTO job_execution_logs (job_name, started_at, status, trigger, instance, attempt, heartbeat_at)
         VALUES ('partner-analytics', now(), 'running', 'manual', 'elsewhere', 1, now())",
    )
    .execute(server.db.pool())
    .await
    .unwrap();
    let (status, body) = server.post("/admin/jobs/partner-analytics/run", json!({})).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")), "{body}");
    let (_, job) = server.get("/admin/jobs/partner-analytics").await;
    assert_eq!(job["running"], true);

    // Pause with one operator, resume with the other; both recorded under their names.
    let (status, paused) = server.post("/admin/jobs/streak-reset/pause", json!({})).await;
    assert_eq!((status, paused["state"].as_str()), (200, Some("paused")));
    let resume = server.http.post(server.url("/admin/jobs/streak-reset/resume")).bearer_auth(OTHER_TOKEN);
    let (status, resumed) = send(resume).await;
    assert_eq!((status, resumed["state"].as_str()), (200, Some("active")));
    let (_, audit) = server.get("/admin/audit").await;
    let actions: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap().into(),
                r["action"].as_str().unwrap().into(),
                r["target"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("ci".into(), "job.resume".into(), "streak-reset".into()),
            ("ops".into(), "job.pause".into(), "streak-reset".into()),
            ("ops".into(), "job.run".into(), "streak-reset".into()),
        ]
    );
    assert!(audit[0]["request_id"].is_string());
    server.stop().await;
}

#[tokio::test]
async fn campaigns_are_validated_with_paths_previewed_created_and_cancelled() {
    let server = AdminServer::start().await;
    let ios = user_with_token(&server.db, "ios").await;
    let _android = user_with_token(&server.db, "android").await;
    let _no_token = server.db.user().await;

    let (status, body) = server
        .post(
            "/admin/campaigns",
            json!({
                "title_tr": " ", "body_tr": "Maç başlıyor", "image_url": "ftp://example.com/x.png",
                "target_audience": "segment",
                "segment_filter": {"xp_level": {"in": ["gold", "wood"]}, "shoe_size": 42},
                "scheduled_at": "2020-01-01T00:00:00Z"
            }),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let paths: BTreeSet<&str> =
        body["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert!(paths.contains("title_tr"), "{body}");
    assert!(paths.contains("image_url"), "{body}");
    assert!(paths.contains("scheduled_at"), "{body}");
    assert!(paths.contains("segment_filter.shoe_size"), "{body}");
    assert!(paths.iter().any(|p| p.starts_with("segment_filter.xp_level")), "{body}");

    let (status, body) = server.post("/admin/campaigns", json!({"body_tr": "x"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("title_tr")), "{body}");
    let (status, body) = server.post("/admin/campaigns", json!({"title_tr": "x", "body_tr": "y", "colour": 1})).await;
    assert_eq!(status, 422, "{body}");
    let not_json = server.request(Method::POST, "/admin/campaigns").header("content-type", "application/json");
    assert_eq!(send(not_json.body("{\"title_tr\": ")).await.0, 400);
    let stored: i64 =
        db::query_scalar("SELECT count(*) FROM scheduled_notifications").fetch_one(server.db.pool()).await.unwrap();
    assert_eq!(stored, 0, "nothing stored from invalid requests");

    let (status, size) = server
        .post("/admin/campaigns/preview", json!({"target_audience": "segment", "segment_filter": {"platform": "ios"}}))
        .await;
    assert_eq!((status, size["users"].as_i64()), (200, Some(1)), "{size}");
    let (_, everyone) = server.post("/admin/campaigns/preview", json!({})).await;
    assert_eq!(everyone["users"], 3);
    let (status, body) = server
        .post("/admin/campaigns/preview", json!({"target_audience": "segment", "segment_filter": {"platform": 7}}))
        .await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("segment_filter.platform")), "{body}");

    let (status, campaign) = server
        .post(
            "/admin/campaigns",
            json!({"title_tr": "Derbi!", "body_tr": "Tahminini yap", "target_audience": "segment",
                   "segment_filter": {"platform": "ios"}}),
        )
        .await;
    assert_eq!((status, campaign["status"].as_str()), (201, Some("pending")), "{campaign}");
    let id = campaign["id"].as_str().unwrap().to_owned();
    let (status, listed) = server.get("/admin/campaigns").await;
    assert_eq!((status, listed[0]["id"].as_str()), (200, Some(id.as_str())));

    // Expanded by the job, then one push sent: delivery stats follow the outbox.
    let (_, run) = server.post("/admin/jobs/scheduled-notifications/run", json!({})).await;
    server.wait_for_run(run["run_id"].as_str().unwrap()).await;
    let (_, delivery) = server.get(&format!("/admin/campaigns/{id}")).await;
    assert_eq!(delivery["recipient_count"], 1, "{delivery}");
    assert_eq!(delivery["outbox"], json!({"pending": 1}));
    let users: Vec<Uuid> = db::query_scalar("SELECT customer_user_id FROM push_outbox WHERE campaign_id = $1::uuid")
        .bind(&id)
        .fetch_all(server.db.pool())
        .await
        .unwrap();
    assert_eq!(users, [ios]);

    let (status, cancelled) = server.post(&format!("/admin/campaigns/{id}/cancel"), json!({})).await;
    assert_eq!((status, cancelled["status"].as_str()), (200, Some("cancelled")), "{cancelled}");
    assert_eq!(cancelled["outbox"], json!({"cancelled": 1}));
    let (status, again) = server.post(&format!("/admin/campaigns/{id}/cancel"), json!({})).await;
    assert_eq!((status, again["error"].as_str()), (409, Some("conflict")));
    assert_eq!(server.get(&format!("/admin/campaigns/{}", Uuid::new_v4())).await.0, 404);
    assert_eq!(server.post(&format!("/admin/campaigns/{}/cancel", Uuid::new_v4()), json!({})).await.0, 404);
    assert_eq!(server.get("/admin/campaigns/not-an-id").await.0, 404);

    let (_, audit) = server.get("/admin/audit?limit=10").await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["campaign.cancel", "job.run", "campaign.create"]);
    server.stop().await;
}

#[tokio::test]
async fn partner_analytics_outbox_and_test_push() {
    let server = AdminServer::start().await;
    let owner = server.db.user().await;
    let partner: Uuid = db::query_scalar(
        "INSERT INTO partners (customer_user_id, business_name, email, phone, status, referral_code)
         VALUES ($1, 'Kadıköy Spor', 'p@example.com', '555', 'approved', 'KDK') RETURNING id",
    )
    .bind(owner)
    .fetch_one(server.db.pool())
    .await
    .unwrap();
    db::query(
        "INSERT INTO partner_analytics (partner_id, date, new_signups, new_subscriptions, revenue, commission,
                                        active_subscribers, churn_count)
         SELECT $1, d::date, 2, 1, 99.90, 19.98, 10, 0 FROM generate_series('2026-11-01'::date, '2026-11-07', '1 day') d",
    )
    .bind(partner)
    .execute(server.db.pool())
    .await
    .unwrap();
    let (status, days) = server.get("/admin/partners/analytics?from=2026-11-02&to=2026-11-04").await;
    assert_eq!(status, 200);
    let days = days.as_array().unwrap();
    assert_eq!(days.len(), 3);
    assert_eq!((days[0]["date"].as_str(), days[0]["revenue"].as_f64()), (Some("2026-11-02"), Some(99.9)));
    assert_eq!(days[0]["business_name"], "Kadıköy Spor");
    let (status, body) = server.get("/admin/partners/analytics?from=2026-11-05&to=2026-11-01").await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("to")), "{body}");
    let (status, body) = server.get("/admin/partners/analytics?from=2024-01-01&to=2026-01-01").await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = server.get("/admin/partners/analytics?from=2026-11-01").await;
    assert_eq!(status, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains("to"), "{body}");

    let user = user_with_token(&server.db, "android").await;
    let (status, body) = server.post("/admin/push/test", json!({"users": [], "title": "t"})).await;
    assert_eq!(status, 422, "{body}");
    let paths: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["users", "body"]);
    assert_eq!(
        server.post("/admin/push/test", json!({"users": [Uuid::new_v4()], "title": "t", "body": "b"})).await.0,
        404
    );
    let (status, results) =
        server.post("/admin/push/test", json!({"users": [user], "title": "Test", "body": "Merhaba"})).await;
    assert_eq!(status, 200, "{results}");
    assert_eq!(results[0]["status"], "sent", "{results}");
    assert_eq!(server.fake.stats().accepted, 1);

    let (status, outbox) = server.get("/admin/outbox").await;
    assert_eq!(status, 200);
    assert_eq!((outbox["pending"].as_i64(), outbox["due"].as_i64()), (Some(0), Some(0)), "{outbox}");
    server.stop().await;
}

/// A failed outbox row of `user` written at `at`, with its last error and a failed delivery to the user's token.
async fn failed_push(server: &AdminServer, user: Uuid, key: &str, error: &str, expires: Option<&str>) -> i64 {
    let id: i64 = db::query_scalar(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, data, not_before, created_at,
                                  status, attempts, tokens_failed, last_error, expires_at)
         VALUES ($1, 'reward', $2, 'Rozet', 'Kazandın', '{\"type\": \"badge_unlock\"}', now(), now(), 'failed', 3, 1,
                 $3, $4::timestamptz)
         RETURNING id",
    )
    .bind(user)
    .bind(key)
    .bind(error)
    .bind(expires)
    .fetch_one(server.db.pool())
    .await
    .unwrap();
    db::query(
        "INSERT INTO hattrick_push_deliveries (outbox_id, token, platform, status, error, updated_at)
         VALUES ($1, 'token-' || $2, 'android', 'failed', $3, now())",
    )
    .bind(id)
    .bind(user.to_string())
    .bind(error)
    .execute(server.db.pool())
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn failed_pushes_and_runs_are_redriven_by_filter_and_audited() {
    let server = AdminServer::start().await;
    let live = user_with_token(&server.db, "android").await;
    let dead = user_with_token(&server.db, "ios").await;
    db::query("UPDATE customer_push_tokens SET is_active = false WHERE customer_user_id = $1")
        .bind(dead)
        .execute(server.db.pool())
        .await
        .unwrap();
    let retried = failed_push(&server, live, "a", "UNAVAILABLE", None).await;
    let other_error = failed_push(&server, live, "b", "INVALID_ARGUMENT", None).await;
    let no_device = failed_push(&server, dead, "c", "UNAVAILABLE", None).await;
    let expired = failed_push(&server, live, "d", "UNAVAILABLE", Some("2020-01-01T00:00:00Z")).await;

    // A redrive needs a criterion; a backwards window and unknown fields are refused with their paths.
    let (status, body) = server.post("/admin/push/redrive", json!({})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) =
        server.post("/admin/push/redrive", json!({"from": "2026-12-05T10:00:00Z", "to": "2026-12-05T09:00:00Z"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("to")), "{body}");
    assert_eq!(server.post("/admin/push/redrive", json!({"error": "X", "code": 1})).await.0, 422);

    let (status, done) = server.post("/admin/push/redrive", json!({"error": "UNAVAILABLE"})).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done, json!({"redriven": 1, "no_live_device": 1, "expired": 1, "campaigns_reopened": 0}));
    let statuses: Vec<(i64, String)> =
        db::query_as("SELECT id, status FROM push_outbox ORDER BY id").fetch_all(server.db.pool()).await.unwrap();
    assert_eq!(
        statuses,
        [
            (retried, "pending".to_owned()),
            (other_error, "failed".to_owned()),
            (no_device, "failed".to_owned()),
            (expired, "failed".to_owned())
        ]
    );
    // The failed delivery is forgotten, so the device is tried again, and the push reaches it.
    let deliveries: i64 = db::query_scalar("SELECT count(*) FROM hattrick_push_deliveries WHERE outbox_id = $1")
        .bind(retried)
        .fetch_one(server.db.pool())
        .await
        .unwrap();
    assert_eq!(deliveries, 0);
    server.admin.test_sender.drain(chrono::Utc::now()).await.unwrap();
    let (status, sent): (String, i32) = db::query_as("SELECT status, tokens_sent FROM push_outbox WHERE id = $1")
        .bind(retried)
        .fetch_one(server.db.pool())
        .await
        .unwrap();
    assert_eq!((status.as_str(), sent), ("sent", 1));
    assert_eq!(server.fake.stats().per_token.get(&format!("token-{live}")), Some(&1));
    // Singly, by id: a second redrive of the same row finds nothing failed.
    let (_, again) = server.post("/admin/push/redrive", json!({"ids": [retried, other_error]})).await;
    assert_eq!(again["redriven"], 1, "{again}");

    // A failed run's job is run again, once, and both redrives are in the audit log.
    db::query(
        "INSERT INTO job_execution_logs (id, job_name, status, trigger, started_at, completed_at, error_message)
         VALUES ($1, 'dead-token-cleanup', 'failed', 'schedule', now() - interval '1 hour', now(), 'boom'),
                ($2, 'dead-token-cleanup', 'failed', 'schedule', now() - interval '2 hours', now(), 'boom')",
    )
    .bind(Uuid::new_v4())
    .bind(Uuid::new_v4())
    .execute(server.db.pool())
    .await
    .unwrap();
    assert_eq!(server.post("/admin/runs/redrive", json!({})).await.0, 422);
    let (status, runs) = server.post("/admin/runs/redrive", json!({"job": "dead-token-cleanup"})).await;
    assert_eq!(status, 200, "{runs}");
    assert_eq!(runs["failed"].as_array().unwrap().len(), 1, "the latest failed run of the job: {runs}");
    assert_eq!(runs["started"][0]["job"], "dead-token-cleanup", "{runs}");
    let (status, nothing) = server.post("/admin/runs/redrive", json!({"job": "no-such-job"})).await;
    assert_eq!((status, nothing["started"].as_array().map(Vec::len)), (200, Some(0)), "{nothing}");
    let actions: Vec<String> =
        db::query_scalar("SELECT action FROM hattrick_audit_log WHERE action LIKE '%redrive' ORDER BY id")
            .fetch_all(server.db.pool())
            .await
            .unwrap();
    assert_eq!(actions, ["push.redrive", "push.redrive", "run.redrive", "run.redrive"]);
    server.stop().await;
}

#[tokio::test]
async fn an_experiment_at_local_time_is_validated_sent_and_read_out_with_intervals() {
    let server = AdminServer::start().await;
    db::query(
        "INSERT INTO customer_users (email, timezone)
         SELECT 'e' || n || '@example.com', CASE WHEN n % 3 = 0 THEN 'America/New_York' ELSE 'Europe/Istanbul' END
         FROM generate_series(1, 400) n",
    )
    .execute(server.db.pool())
    .await
    .unwrap();
    let variant = |title: &str| json!({"title_tr": title, "body_tr": "Bu akşam derbi var"});
    // One variant is not an experiment; a holdout over 50 % or an unknown event neither.
    let (status, body) = server
        .post(
            "/admin/campaigns",
            json!({"title_tr": "Derbi", "body_tr": "b", "variants": [variant("A")], "holdout_percent": 60,
                   "conversion_event": "purchase"}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let paths: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["variants", "holdout_percent", "conversion_event"], "{body}");
    let (status, body) =
        server.post("/admin/campaigns", json!({"title_tr": "Derbi", "body_tr": "b", "if_passed": "skip"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("if_passed")), "{body}");

    // A local time 2 minutes from now in Istanbul (UTC+3), and 8 hours later in New York.
    let local = (chrono::Utc::now() + chrono::Duration::minutes(182)).naive_utc().with_nanosecond(0).unwrap();
    let (status, campaign) = server
        .post(
            "/admin/campaigns",
            json!({"title_tr": "Derbi", "body_tr": "b", "local_time": local, "holdout_percent": 20,
                   "variants": [variant("A"), variant("B")], "conversion_event": "daily_reward",
                   "conversion_window_hours": 48}),
        )
        .await;
    assert_eq!(status, 201, "{campaign}");
    assert_eq!(campaign["if_passed"], "next_day");
    let id = campaign["id"].as_str().unwrap().to_owned();
    let (_, detail) = server.get(&format!("/admin/campaigns/{id}")).await;
    let zones: Vec<&str> = detail["zones"].as_array().unwrap().iter().map(|z| z["zone"].as_str().unwrap()).collect();
    assert_eq!(zones, ["Europe/Istanbul", "America/New_York"], "Istanbul's 19:00 comes first: {detail}");

    let (status, started) = server.post("/admin/jobs/scheduled-notifications/run", json!(null)).await;
    assert_eq!(status, 202, "{started}");
    // The run writes Istanbul's users (their time comes within minutes), not New York's yet.
    let mut assigned = 0_i64;
    for _ in 0..100 {
        assigned = db::query_scalar("SELECT count(*) FROM hattrick_campaign_assignments")
            .fetch_one(server.db.pool())
            .await
            .unwrap();
        if assigned > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(assigned, 267, "the Istanbul users: 2 of every 3");
    // Every user of variant 2 claims a daily reward right after the send; nobody else does.
    db::query(
        "INSERT INTO customer_daily_rewards (customer_user_id, reward_date, day_number, reward_type, reward_amount,
                                             claimed_at)
         SELECT customer_user_id, current_date, 1, 'credits', 10, send_at + interval '1 hour'
         FROM hattrick_campaign_assignments WHERE variant = 2",
    )
    .execute(server.db.pool())
    .await
    .unwrap();
    let (status, results) = server.get(&format!("/admin/campaigns/{id}/results")).await;
    assert_eq!(status, 200, "{results}");
    let groups = results["groups"].as_array().unwrap();
    let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["holdout", "variant 1", "variant 2"]);
    let users: i64 = groups.iter().map(|g| g["users"].as_i64().unwrap()).sum();
    assert_eq!(users, 267);
    assert_eq!(groups[0]["delivered"], 0);
    assert_eq!((groups[2]["conversion"]["value"].as_f64(), groups[1]["converted"].as_i64()), (Some(1.0), Some(0)));
    assert!(groups[2]["lift"]["low"].as_f64().unwrap() > 0.9, "{results}");
    assert!(groups[1]["lift"]["low"].as_f64().unwrap() < 0.0, "no difference: its interval spans 0: {results}");
    assert!(groups[0]["lift"].is_null());
    assert_eq!(results["final_figures"], false, "the windows are still open: {results}");
    // A campaign that is not an experiment has no groups; an unknown one is 404.
    let (_, plain) = server.post("/admin/campaigns", json!({"title_tr": "T", "body_tr": "B"})).await;
    let (status, read_out) = server.get(&format!("/admin/campaigns/{}/results", plain["id"].as_str().unwrap())).await;
    assert_eq!(
        (status, read_out["experiment"].as_bool(), read_out["groups"].as_array().map(Vec::len)),
        (200, Some(false), Some(0))
    );
    assert_eq!(server.get(&format!("/admin/campaigns/{}/results", Uuid::new_v4())).await.0, 404);
    server.stop().await;
}

#[tokio::test]
async fn the_push_texts_are_listed_extended_rendered_and_removed_from_the_api_and_the_page() {
    let server = AdminServer::start().await;
    let (status, catalogue) = server.get("/admin/messages").await;
    assert_eq!(status, 200, "{catalogue}");
    assert_eq!(catalogue["locales"], json!(["en", "tr"]));
    assert_eq!(catalogue["problems"], json!([]));
    let streak = catalogue["kinds"].as_array().unwrap().iter().find(|k| k["kind"] == "streak_warning").unwrap();
    assert_eq!(streak["placeholders"], json!({"hours": "2", "streak": "7"}));

    let put = |path: &str, body: Value| server.request(Method::PUT, path).json(&body);
    let german = json!({"title": "Serien-Alarm 🔥", "body": "{streak} Tage, noch {hours} Stunden"});
    let (status, written) = send(put("/admin/messages/streak_warning/de_AT", german.clone())).await;
    assert_eq!((status, written), (200, json!({"kind": "streak_warning", "locale": "de-at", "replaced": false})));
    let (_, again) = send(put("/admin/messages/streak_warning/de-AT", german)).await;
    assert_eq!(again["replaced"], true);
    // Each problem with its path; an unknown kind is not found.
    let (status, body) =
        send(put("/admin/messages/streak_warning/deutsch", json!({"title": " ", "body": "{tage}"}))).await;
    assert_eq!(status, 422, "{body}");
    let paths: Vec<&str> = body["errors"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["locale", "title", "body"], "{body}");
    assert_eq!(send(put("/admin/messages/streak/de", json!({"title": "a", "body": "b"}))).await.0, 404);

    // Rendered through the fallbacks: the region's own text, else English.
    let (status, rendered) = server.get("/admin/messages/streak_warning/render?locale=de_AT").await;
    assert_eq!(status, 200, "{rendered}");
    assert_eq!(
        rendered,
        json!({"locale": "de-at", "text_locale": "de-at", "title": "Serien-Alarm 🔥", "body": "7 Tage, noch 2 Stunden"})
    );
    let (_, swiss) = server.get("/admin/messages/streak_warning/render?locale=de-CH").await;
    assert_eq!(swiss["text_locale"], "en", "de-ch has no text and de neither: English");
    assert_eq!(server.get("/admin/messages/streak_warning/render?locale=x").await.0, 422);

    // A test push of the message in a locale reaches the device with the rendered text.
    let user = user_with_token(&server.db, "android").await;
    let (status, results) =
        server.post("/admin/push/test", json!({"users": [user], "message": "streak_warning", "locale": "de-AT"})).await;
    assert_eq!((status, results[0]["status"].as_str()), (200, Some("sent")), "{results}");
    let body: String = db::query_scalar("SELECT body FROM push_outbox WHERE category = 'test'")
        .fetch_one(server.db.pool())
        .await
        .unwrap();
    assert_eq!(body, "7 Tage, noch 2 Stunden");
    let (status, refused) =
        server.post("/admin/push/test", json!({"users": [user], "message": "nope", "locale": "??"})).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"].as_array().unwrap().len(), 2, "{refused}");

    // The page lists the texts and removes the deployment's; the built-in ones have no button.
    let session = sign_in(&server).await;
    let html = server.http.get(server.url("/admin/ui/messages")).header("cookie", &session).send().await.unwrap();
    let html = html.text().await.unwrap();
    assert!(html.contains("Serien-Alarm 🔥"), "the deployment's text is listed");
    assert_eq!(html.matches("action=\"/admin/ui/messages/remove\"").count(), 1, "only the deployment's text");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    let post = |path: &str, pairs: Vec<(&'static str, &str)>| {
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend(pairs);
        server
            .http
            .post(server.url(path))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&all))
            .send()
    };
    let bad = post(
        "/admin/ui/messages/save",
        vec![("kind", "welcome_vip"), ("locale", "it"), ("title", "Benvenuto"), ("body", "{credits}")],
    )
    .await
    .unwrap();
    assert!(bad.headers()["location"].to_str().unwrap().contains("placeholder"), "{:?}", bad.headers());
    let saved = post(
        "/admin/ui/messages/save",
        vec![("kind", "welcome_vip"), ("locale", "it"), ("title", "Benvenuto VIP! 👑"), ("body", "Buone previsioni!")],
    )
    .await
    .unwrap();
    assert_eq!(saved.status(), 303);
    let removed =
        post("/admin/ui/messages/remove", vec![("kind", "streak_warning"), ("locale", "de-at")]).await.unwrap();
    assert!(removed.headers()["location"].to_str().unwrap().contains("Removed"), "{:?}", removed.headers());
    let (status, _) = send(server.request(Method::DELETE, "/admin/messages/streak_warning/de-at")).await;
    assert_eq!(status, 404, "removed already");
    let (status, _) = send(server.request(Method::DELETE, "/admin/messages/welcome_vip/it")).await;
    assert_eq!(status, 200);
    let (_, audit) = server.get("/admin/audit").await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|a| a["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions[..6],
        ["message.remove", "message.remove", "message.put", "push.test", "message.put", "message.put"]
    );
    server.stop().await;
}

#[tokio::test]
async fn operator_actions_go_through_the_ledger_once() {
    let server = AdminServer::start().await;
    let user = server.db.user().await;
    db::query(
        "INSERT INTO badges (slug, name_tr, name_en, icon_url, category, unlock_condition, reward_xp, reward_credits)
         VALUES ('founder', 'Kurucu', 'Founder', 'https://example.com/f.png', 'special', '{\"type\": \"manual\"}', 600, 50)",
    )
    .execute(server.db.pool())
    .await
    .unwrap();

    let (status, grant) = server.post(&format!("/admin/users/{user}/badges"), json!({"badge": "founder"})).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["granted"], true);
    assert_eq!(grant["xp"], 600);
    assert!(grant["credits"].as_i64().unwrap() >= 50, "badge credits plus the level-up bonus: {grant}");
    let (_, again) = server.post(&format!("/admin/users/{user}/badges"), json!({"badge": "founder"})).await;
    assert_eq!((again["granted"].as_bool(), again["xp"].as_i64()), (Some(false), Some(0)));
    assert_eq!(server.post(&format!("/admin/users/{user}/badges"), json!({"badge": "nope"})).await.0, 404);
    let unknown_user = format!("/admin/users/{}/badges", Uuid::new_v4());
    assert_eq!(server.post(&unknown_user, json!({"badge": "founder"})).await.0, 404);
    let (status, body) = server.post(&format!("/admin/users/{user}/badges"), json!({"slug": "founder"})).await;
    assert_eq!(status, 422, "{body}");

    let revoke = format!("/admin/users/{user}/badges/founder");
    let (status, revoked) = send(server.request(Method::DELETE, &revoke)).await;
    assert_eq!((status, revoked["revoked"].as_bool()), (200, Some(true)));
    assert_eq!(send(server.request(Method::DELETE, &revoke)).await.1["revoked"], false);
    // Granted again after a revocation: the badge comes back, its rewards are not paid twice.
    let (_, regrant) = server.post(&format!("/admin/users/{user}/badges"), json!({"badge": "founder"})).await;
    assert_eq!((regrant["granted"].as_bool(), regrant["xp"].as_i64()), (Some(true), Some(0)), "{regrant}");

    let balance: i64 = db::query_scalar("SELECT balance::bigint FROM customer_credits WHERE customer_user_id = $1")
        .bind(user)
        .fetch_one(server.db.pool())
        .await
        .unwrap();
    let credits = format!("/admin/users/{user}/credits");
    let grant = || server.request(Method::POST, &credits).header("idempotency-key", "ticket-42");
    let (status, first) = send(grant().json(&json!({"amount": 250, "reason": "support ticket 42"}))).await;
    assert_eq!((status, first["applied"].as_bool(), first["balance"].as_i64()), (200, Some(true), Some(balance + 250)));
    let (_, retried) = send(grant().json(&json!({"amount": 250, "reason": "support ticket 42"}))).await;
    assert_eq!((retried["applied"].as_bool(), retried["balance"].as_i64()), (Some(false), Some(balance + 250)));
    let (status, body) = server.post(&credits, json!({"amount": -(balance + 251), "reason": "too much"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("amount")), "{body}");
    let (status, body) = server.post(&credits, json!({"amount": 0, "reason": ""})).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = server.post(&credits, json!({"amount": "ten", "reason": "x"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("amount")), "{body}");
    let (status, deducted) = server.post(&credits, json!({"amount": -100, "reason": "chargeback"})).await;
    assert_eq!((status, deducted["balance"].as_i64()), (200, Some(balance + 150)), "{deducted}");

    let (status, xp) =
        server.post(&format!("/admin/users/{user}/xp"), json!({"amount": 1500, "reason": "event prize"})).await;
    assert_eq!((status, xp["applied"].as_bool()), (200, Some(true)), "{xp}");
    assert_eq!(xp["balance"], 2100, "600 from the badge, 1500 granted");
    assert_eq!(xp["level_ups"], 1, "gold at 2000: {xp}");

    let kinds: Vec<(String, i32)> = db::query_as(
        "SELECT transaction_type, amount FROM customer_credit_transactions
         WHERE customer_user_id = $1 AND transaction_type LIKE 'admin_%' ORDER BY created_at, amount",
    )
    .bind(user)
    .fetch_all(server.db.pool())
    .await
    .unwrap();
    assert_eq!(kinds, [("admin_grant".to_owned(), 250), ("admin_deduct".to_owned(), -100)]);
    testkit::assert_ledger_invariants(server.db.pool()).await;

    let (_, audit) = server.get("/admin/audit").await;
    let actions: Vec<&str> = audit.as_array().unwrap().iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["xp.adjust", "credits.adjust", "credits.adjust", "badge.grant", "badge.revoke", "badge.grant"]
    );
    server.stop().await;
}

#[tokio::test]
async fn a_failing_write_answers_500_without_detail_and_leaves_nothing_behind() {
    let server = AdminServer::start().await;
    // The audit log is gone: the pause cannot be recorded, so it must not happen.
    db::query("DROP TABLE hattrick_audit_log").execute(server.db.pool()).await.unwrap();
    let response = server.request(Method::POST, "/admin/jobs/streak-reset/pause").send().await.unwrap();
    assert_eq!(response.status(), 500);
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.text().await.unwrap();
    let json: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["error"], "internal");
    for leak in ["hattrick_audit_log", "relation", "sqlx", "postgres", "SELECT", "INSERT"] {
        assert!(!body.contains(leak), "the 500 body leaks {leak:?}: {body}");
    }
    let (_, job) = server.get("/admin/jobs/streak-reset").await;
    assert_eq!(job["state"], "active", "the pause was rolled back with its audit record");
    server.stop().await;
}

#[tokio::test]
async fn requests_carry_ids_and_bodies_are_limited() {
    let server = AdminServer::with_settings(|settings| settings.admin.body_limit = 4096).await;
    let response =
        server.request(Method::GET, "/admin/jobs").header("x-request-id", "req-from-client").send().await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-from-client");
    let response = server.request(Method::GET, "/admin/jobs").send().await.unwrap();
    assert!(Uuid::parse_str(response.headers()["x-request-id"].to_str().unwrap()).is_ok());

    let big = json!({"title_tr": "x".repeat(10_000), "body_tr": "y"});
    let (status, _) = server.post("/admin/campaigns", big).await;
    assert_eq!(status, 413);
    server.stop().await;
}

#[tokio::test]
async fn readiness_follows_the_schema() {
    let server = AdminServer::start().await;
    assert_eq!(server.http.get(server.url("/readyz")).send().await.unwrap().status(), 200);
    db::query("UPDATE hattrick_schema_state SET value = 'older' WHERE key = 'schema_checksum'")
        .execute(server.db.pool())
        .await
        .unwrap();
    // Readiness is asked of the database at most once a second.
    let mut response = server.http.get(server.url("/readyz")).send().await.unwrap();
    for _ in 0..30 {
        if response.status() == 503 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        response = server.http.get(server.url("/readyz")).send().await.unwrap();
    }
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("schema"));
    assert_eq!(server.http.get(server.url("/healthz")).send().await.unwrap().status(), 200);
}

/// The value of the sample `name{labels}` (labels as written, in order), 0 when absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn metrics_move_as_jobs_run_and_pushes_are_sent() {
    // Every scrape reads the database here (the cache has its own test).
    let server = AdminServer::with_settings(|s| s.admin.metrics_cache = HumanDuration(Duration::ZERO)).await;
    let scrape = || async {
        let response = server.http.get(server.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
        response.text().await.unwrap()
    };
    let before = scrape().await;
    let runs = r#"hattrick_job_runs_total{job="streak-reset",trigger="manual",outcome="success"}"#;
    let delivered = r#"hattrick_push_messages_total{outcome="delivered"}"#;
    assert_eq!(sample(&before, runs), 0.0);
    assert_eq!(sample(&before, delivered), 0.0);
    assert_eq!(sample(&before, "hattrick_fcm_request_seconds_count"), 0.0);

    let (_, run) = server.post("/admin/jobs/streak-reset/run", json!({})).await;
    server.wait_for_run(run["run_id"].as_str().unwrap()).await;
    let user = user_with_token(&server.db, "ios").await;
    let second = user_with_token(&server.db, "web").await;
    let (status, _) =
        server.post("/admin/push/test", json!({"users": [user, second], "title": "t", "body": "b"})).await;
    assert_eq!(status, 200);
    // A pending push, due an hour ago, shows in the outbox gauges.
    db::query(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, not_before, created_at)
         VALUES ($1, 'reward', 'metrics-test', 't', 'b', now() - interval '1 hour', now())",
    )
    .bind(user)
    .execute(server.db.pool())
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;

    let after = scrape().await;
    assert_eq!(sample(&after, runs), 1.0, "{after}");
    assert_eq!(sample(&after, delivered), 2.0, "{after}");
    assert_eq!(sample(&after, "hattrick_fcm_request_seconds_count"), 2.0);
    assert_eq!(sample(&after, r#"hattrick_fcm_request_seconds_bucket{le="+Inf"}"#), 2.0);
    assert_eq!(sample(&after, "hattrick_outbox_due"), 1.0);
    assert!(sample(&after, "hattrick_outbox_oldest_due_seconds") >= 3500.0, "{after}");
    assert!(sample(&after, r#"hattrick_job_last_success_timestamp_seconds{job="streak-reset"}"#) > 1.7e9);
    let jobs_route = r#"hattrick_http_requests_total{route="/admin/jobs/{name}/run",status="202"}"#;
    assert_eq!(sample(&after, jobs_route), 1.0, "{after}");
    assert!(sample(&after, r#"hattrick_http_requests_total{route="/metrics",status="200"}"#) >= 1.0);

    // Well-formed: every sample belongs to the family declared just before it.
    let mut family = String::new();
    for line in after.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().unwrap().to_owned();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
            assert!(name == family || base == family, "{line} is outside its family {family}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn the_page_needs_a_session_and_a_csrf_token() {
    let server = AdminServer::start().await;
    let response = server.http.get(server.url("/admin/ui")).send().await.unwrap();
    assert_eq!(
        (response.status().as_u16(), response.headers()["location"].to_str().unwrap()),
        (303, "/admin/ui/login")
    );
    // The sign-in form carries a token of its own, also set as a cookie: a form posted from elsewhere has neither.
    let (login_cookie, login_csrf) = login_form(&server).await;
    let sign_in = |token: &'static str, csrf: String, cookie: Option<String>| {
        let mut request = server
            .http
            .post(server.url("/admin/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("token", token), ("csrf", csrf.as_str())]));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send()
    };
    let no_form = sign_in(TOKEN, String::new(), None).await.unwrap();
    assert_eq!(no_form.status(), 403, "a sign-in without the form's token is refused");
    let wrong = sign_in("wrong", login_csrf.clone(), Some(login_cookie.clone())).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("hattrick_session")));
    let signed_in = sign_in(TOKEN, login_csrf, Some(login_cookie)).await.unwrap();
    assert_eq!(signed_in.status(), 303);
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("hattrick_session="))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    assert!(!cookie.contains("Secure"), "not Secure unless admin.secure_cookies: {cookie}");
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = server.http.get(server.url("/admin/ui")).header("cookie", &session).send().await.unwrap();
    assert_eq!(page.status(), 200);
    for (header, value) in [
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.headers()[header], value, "{header}");
    }
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
    let html = page.text().await.unwrap();
    assert!(!html.contains("<script>"), "no inline script: the CSP forbids it");
    assert!(html.contains("data-job=\"badge-auto-unlock\"") && html.contains("<svg class=\"spark\""));
    assert!(!html.contains(TOKEN), "the page never shows the token");
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();

    let pause = server.url("/admin/ui/jobs/streak-reset/pause");
    let forged = server
        .http
        .post(&pause)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", "forged")]))
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    let without = server
        .http
        .post(&pause)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 303, "no session: back to sign-in");
    assert_eq!(server.get("/admin/jobs/streak-reset").await.1["state"], "active");
    let done = server
        .http
        .post(&pause)
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(done.status(), 303);
    assert_eq!(server.get("/admin/jobs/streak-reset").await.1["state"], "paused");
    let (_, audit) = server.get("/admin/audit").await;
    assert_eq!((audit[0]["actor"].as_str(), audit[0]["action"].as_str()), (Some("ops"), Some("job.pause")));

    // A failed push is retried from the outbox page, by the button beside it; a bad filter is named.
    let user = user_with_token(&server.db, "android").await;
    let failed = failed_push(&server, user, "page", "INTERNAL", None).await;
    let outbox = server.http.get(server.url("/admin/ui/outbox")).header("cookie", &session).send().await.unwrap();
    let html = outbox.text().await.unwrap();
    assert!(html.contains(&format!("name=\"id\" value=\"{failed}\"")), "a Retry button per failure");
    let retry = |fields: Vec<(&'static str, String)>| {
        let mut pairs = vec![("csrf", csrf.clone())];
        pairs.extend(fields);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        server
            .http
            .post(server.url("/admin/ui/outbox/redrive"))
            .header("cookie", &session)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&pairs))
            .send()
    };
    let bad = retry(vec![("campaign_id", "nope".to_owned())]).await.unwrap();
    assert!(bad.headers()["location"].to_str().unwrap().contains("campaign_id"), "{:?}", bad.headers());
    let done = retry(vec![("id", failed.to_string())]).await.unwrap();
    assert_eq!(done.status(), 303);
    assert!(done.headers()["location"].to_str().unwrap().contains("Sending+1+failed"), "{:?}", done.headers());
    let (_, audit) = server.get("/admin/audit").await;
    assert_eq!(audit[0]["action"], "push.redrive");

    // Signing out revokes the session: a copy of the cookie kept elsewhere stops working too.
    let out = server
        .http
        .post(server.url("/admin/ui/logout"))
        .header("cookie", &session)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let copied = server.http.get(server.url("/admin/ui")).header("cookie", &session).send().await.unwrap();
    assert_eq!(
        (copied.status().as_u16(), copied.headers()["location"].to_str().unwrap()),
        (303, "/admin/ui/login"),
        "a revoked session is signed out everywhere"
    );
    server.stop().await;
}

/// The sign-in page's cookie (`name=value`) and the form's token.
async fn login_form(server: &AdminServer) -> (String, String) {
    let page = server.http.get(server.url("/admin/ui/login")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap().split('"').next().unwrap().to_owned();
    (cookie, csrf)
}

/// The token-less server of a developer's machine.
async fn tokenless() -> AdminServer {
    AdminServer::with_settings(|s| s.admin.tokens.clear()).await
}

#[tokio::test]
async fn a_tokenless_server_answers_only_loopback_hosts_and_same_origin_writes() {
    let server = tokenless().await;
    let user = server.db.user().await;
    let grant = |host: Option<&str>, origin: Option<&str>, site: Option<&str>| {
        let mut request = server
            .http
            .post(server.url(&format!("/admin/users/{user}/credits")))
            .json(&json!({"amount": 5, "reason": "probe"}));
        for (name, value) in [("host", host), ("origin", origin), ("sec-fetch-site", site)] {
            if let Some(value) = value {
                request = request.header(name, value);
            }
        }
        send(request)
    };
    // DNS rebinding: a page on rebind.evil.example whose name now resolves to 127.0.0.1.
    let (status, body) = grant(Some("rebind.evil.example:8080"), None, None).await;
    assert_eq!(status, 403, "{body}");
    // A form or fetch from another site.
    assert_eq!(grant(None, Some("https://evil.example"), None).await.0, 403);
    assert_eq!(grant(None, Some("null"), None).await.0, 403);
    assert_eq!(grant(None, None, Some("cross-site")).await.0, 403);
    let pause = server
        .http
        .post(server.url("/admin/ui/jobs/streak-reset/pause"))
        .header("origin", "https://evil.example")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 403);
    let balance: Option<i32> = db::query_scalar("SELECT balance FROM customer_credits WHERE customer_user_id = $1")
        .bind(user)
        .fetch_optional(server.db.pool())
        .await
        .unwrap();
    assert_eq!(balance, None, "nothing was granted");
    assert_eq!(server.get("/admin/jobs/streak-reset").await.1["state"], "active");
    // The operator's own tools: curl (no Origin), or the page itself (same origin).
    let own = server.base.clone();
    assert_eq!(grant(None, None, None).await.0, 200);
    assert_eq!(grant(Some("localhost"), None, Some("same-origin")).await.0, 200);
    assert_eq!(grant(None, Some(own.as_str()), None).await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_server_with_tokens_answers_its_configured_names() {
    let server = AdminServer::with_settings(|s| s.admin.allowed_hosts = vec!["admin.example.com".to_owned()]).await;
    let get = |host: &'static str| send(server.request(Method::GET, "/admin/jobs").header("host", host));
    assert_eq!(get("admin.example.com").await.0, 200);
    assert_eq!(get("127.0.0.1").await.0, 200);
    assert_eq!(get("other.example.com").await.0, 403);
    // Probes and scrapers name the instance by its address.
    let probe = server.http.get(server.url("/readyz")).header("host", "10.1.2.3:8080").send().await.unwrap();
    assert_eq!(probe.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_is_one_request() {
    let server = AdminServer::start().await;
    let (alice, bob) = (server.db.user().await, server.db.user().await);
    let adjust = |user: Uuid, amount: i64, key: &'static str| {
        send(
            server
                .request(Method::POST, &format!("/admin/users/{user}/credits"))
                .header("idempotency-key", key)
                .json(&json!({"amount": amount, "reason": "goodwill"})),
        )
    };
    let (status, first) = adjust(alice, 40, "ticket-7").await;
    assert_eq!((status, first["applied"].as_bool()), (200, Some(true)), "{first}");
    let (status, replay) = adjust(alice, 40, "ticket-7").await;
    assert_eq!((status, replay["applied"].as_bool(), replay["balance"].as_i64()), (200, Some(false), Some(40)));
    let (status, body) = adjust(alice, 400, "ticket-7").await;
    assert_eq!((status, body["error"].as_str()), (409, Some("conflict")), "another amount: {body}");
    let (status, body) = adjust(bob, 40, "ticket-7").await;
    assert_eq!(status, 409, "another user: {body}");
    let (status, body) = send(
        server
            .request(Method::POST, &format!("/admin/users/{alice}/xp"))
            .header("idempotency-key", "ticket-7")
            .json(&json!({"amount": 40, "reason": "goodwill"})),
    )
    .await;
    assert_eq!(status, 409, "another ledger: {body}");
    // A deduction replayed after the balance fell is still the same request: 200, nothing done.
    assert_eq!(adjust(alice, -30, "ticket-9").await.0, 200);
    assert_eq!(adjust(alice, -10, "ticket-10").await.0, 200);
    let (status, replay) = adjust(alice, -30, "ticket-9").await;
    assert_eq!((status, replay["applied"].as_bool()), (200, Some(false)), "{replay}");
    // Two users with one new key at once: one is applied, the other is a conflict; never a 500.
    let (a, b) = tokio::join!(adjust(alice, 10, "ticket-8"), adjust(bob, 10, "ticket-8"));
    let mut statuses = [a.0, b.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    testkit::assert_ledger_invariants(server.db.pool()).await;
    // The app's key is refused in hattrick's namespace, with its own answer.
    let error = db::query("SELECT hattrick_grant_credits($1, 5, 'ad_reward', 'admin:ticket-7:credits')")
        .bind(alice)
        .execute(server.db.pool())
        .await
        .unwrap_err();
    assert_eq!(error.as_database_error().and_then(|e| e.code()).as_deref(), Some("HT002"), "{error}");
    server.stop().await;
}

#[tokio::test]
async fn values_the_database_cannot_store_are_422_with_their_path() {
    let server = AdminServer::start().await;
    let user = server.db.user().await;
    let campaign = |patch: Value| {
        let mut body = json!({"title_tr": "Başlık", "body_tr": "Metin", "target_audience": "all",
                              "scheduled_at": "2030-01-01T19:00:00Z"});
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        server.post("/admin/campaigns", body)
    };
    let (status, body) = campaign(json!({"title_tr": "a\u{0}b"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("title_tr")), "{body}");
    let (status, body) = campaign(json!({"target_audience": "segment",
        "segment_filter": {"xp_level": {"in": ["gold", "go\u{0}ld"]}}}))
    .await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("segment_filter.xp_level.in[1]")), "{body}");
    let (status, body) =
        server.post(&format!("/admin/users/{user}/credits"), json!({"amount": 5, "reason": "x\u{0}"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("reason")), "{body}");
    let (status, body) =
        server.post(&format!("/admin/users/{user}/credits"), json!({"amount": i64::MIN, "reason": "x"})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("amount")), "{body}");
    let (status, body) = server.get("/admin/partners/analytics?from=-262143-01-01&to=2026-01-01").await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("from")), "{body}");
    let (status, body) = server.get("/admin/jobs/streak%00reset").await;
    assert_eq!(status, 422, "{body}");
    // The page: a signed-in operator asking for a day the calendar cannot hold.
    let session = sign_in(&server).await;
    let page = server
        .http
        .get(server.url("/admin/ui/partners?to=-262143-01-05"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 422);
    assert!(page.text().await.unwrap().contains("to: "));
    let (status, campaigns) = server.get("/admin/campaigns").await;
    assert_eq!((status, campaigns.as_array().map(Vec::len)), (200, Some(0)), "nothing half-written");
    server.stop().await;
}

/// Signs in to the page with the `ops` token; the session cookie (`name=value`).
async fn sign_in(server: &AdminServer) -> String {
    let (cookie, csrf) = login_form(server).await;
    let response = server
        .http
        .post(server.url("/admin/ui/login"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("token", TOKEN), ("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().split(';').next().unwrap().to_owned())
        .find(|c| c.starts_with("hattrick_session="))
        .expect("a session cookie")
}

#[tokio::test]
async fn slow_clients_are_cut_off_and_cannot_take_every_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = AdminServer::with_settings(|s| {
        s.admin.header_timeout = HumanDuration(Duration::from_secs(1));
        s.admin.max_connections = 8;
    })
    .await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    // Twenty clients that send half a request and then nothing, and ten that send nothing at all.
    let mut slow = Vec::new();
    for _ in 0..20 {
        let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
        stream.write_all(b"GET /admin/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").await.unwrap();
        slow.push(stream);
    }
    for _ in 0..10 {
        slow.push(tokio::net::TcpStream::connect(&addr).await.unwrap());
    }
    // A real request still gets its answer: the half-sent ones are cut off after the header timeout.
    let (status, _) = server.get("/admin/jobs").await;
    assert_eq!(status, 200);
    for mut stream in slow {
        let mut buffer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut buffer)).await;
        assert!(read.is_ok(), "a half-sent request was kept open");
    }
    server.stop().await;
}

#[tokio::test]
async fn metrics_can_require_a_token_and_read_the_database_once_per_interval() {
    let server = AdminServer::with_settings(|s| {
        s.admin.metrics_token = Some(Secret::new("metrics-token-0123456789"));
        s.admin.metrics_cache = HumanDuration(Duration::from_secs(3600));
    })
    .await;
    let scrape = |token: Option<&'static str>| {
        let mut request = server.http.get(server.url("/metrics"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    assert_eq!(scrape(None).await.0, 401);
    assert_eq!(scrape(Some(TOKEN)).await.0, 401, "an admin token is not the metrics token");
    let (status, first) = scrape(Some("metrics-token-0123456789")).await;
    assert_eq!(status, 200);
    assert_eq!(sample(&first, "hattrick_outbox_due"), 0.0);
    let user = server.db.user().await;
    db::query(
        "INSERT INTO push_outbox (customer_user_id, category, dedupe_key, title, body, not_before, created_at)
         VALUES ($1, 'reward', 'cached', 't', 'b', now() - interval '1 hour', now())",
    )
    .bind(user)
    .execute(server.db.pool())
    .await
    .unwrap();
    // A flood of scrapes is answered from one reading (the row above is not seen until the cache expires).
    let flood: Vec<_> = (0..64).map(|_| scrape(Some("metrics-token-0123456789"))).collect();
    for (status, text) in futures_util::future::join_all(flood).await {
        assert_eq!(status, 200);
        assert_eq!(sample(&text, "hattrick_outbox_due"), 0.0);
    }
    server.stop().await;
}

#[tokio::test]
async fn api_queries_stop_at_the_statement_timeout() {
    let server =
        AdminServer::with_settings(|s| s.admin.statement_timeout = HumanDuration(Duration::from_millis(300))).await;
    let mut lock = server.db.pool().begin().await.unwrap();
    db::query("LOCK TABLE push_outbox IN ACCESS EXCLUSIVE MODE").execute(&mut *lock).await.unwrap();
    let (status, body) = server.get("/admin/outbox").await;
    assert_eq!((status, body["error"].as_str()), (503, Some("unavailable")), "{body}");
    lock.rollback().await.unwrap();
    assert_eq!(server.get("/admin/outbox").await.0, 200);
    server.stop().await;
}

#[tokio::test]
async fn sign_ins_are_rate_limited_and_cookies_are_secure_behind_tls() {
    let server = AdminServer::with_settings(|s| {
        s.admin.sign_in_attempts = 3;
        s.admin.secure_cookies = true;
    })
    .await;
    let session = sign_in(&server).await;
    let page = server.http.get(server.url("/admin/ui")).header("cookie", &session).send().await.unwrap();
    assert!(page.headers()["strict-transport-security"].to_str().unwrap().starts_with("max-age="));
    let (cookie, csrf) = login_form(&server).await;
    let attempt = |token: &'static str| {
        server
            .http
            .post(server.url("/admin/ui/login"))
            .header("cookie", cookie.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_body(&[("token", token), ("csrf", csrf.as_str())]))
            .send()
    };
    for _ in 0..3 {
        assert_eq!(attempt("wrong").await.unwrap().status(), 401);
    }
    let limited = attempt(TOKEN).await.unwrap();
    assert_eq!(limited.status(), 429, "even the right token waits once the limit is reached");
    assert!(limited.headers().contains_key("retry-after"));
    let signed_in = attempt_with_secure_cookie(&server).await;
    assert!(signed_in.is_none(), "still limited");
    server.stop().await;
}

/// A sign-in's session cookie if it succeeds, checking it is `Secure`.
async fn attempt_with_secure_cookie(server: &AdminServer) -> Option<String> {
    let (cookie, csrf) = login_form(server).await;
    assert!(cookie.starts_with("hattrick_login="));
    let response = server
        .http
        .post(server.url("/admin/ui/login"))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("token", TOKEN), ("csrf", csrf.as_str())]))
        .send()
        .await
        .unwrap();
    let session = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|c| c.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("hattrick_session="))?;
    assert!(session.contains("; Secure"), "{session}");
    Some(session)
}

#[tokio::test]
async fn campaign_and_test_push_content_is_checked_as_fcm_will_see_it() {
    let server = AdminServer::start().await;
    let campaign = |patch: Value| {
        let mut body = json!({"title_tr": "Başlık", "body_tr": "Metin", "target_audience": "all",
                              "scheduled_at": "2030-01-01T19:00:00Z"});
        for (key, value) in patch.as_object().unwrap() {
            body[key] = value.clone();
        }
        server.post("/admin/campaigns", body)
    };
    for (patch, path) in [
        (json!({"image_url": "http://169.254.169.254/latest/meta-data/"}), "image_url"),
        (json!({"image_url": "https://10.0.0.1/a.png"}), "image_url"),
        (json!({"deep_link_url": "javascript:alert(1)"}), "deep_link_url"),
        // 700 control characters: 700 bytes raw, 4,200 once serialised.
        (json!({"body_tr": "\u{1}".repeat(700)}), "body_tr"),
        (json!({"body_en": "\"".repeat(2100), "title_en": "t"}), "body_en"),
    ] {
        let (status, body) = campaign(patch.clone()).await;
        assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some(path)), "{patch}: {body}");
    }
    let (status, body) =
        campaign(json!({"image_url": "https://cdn.goalgpt.com/a.png", "deep_link_url": "goalgpt://matches/1"})).await;
    assert_eq!(status, 201, "{body}");
    let user = user_with_token(&server.db, "android").await;
    let (status, body) =
        server.post("/admin/push/test", json!({"users": [user], "title": "t", "body": "\u{1}".repeat(700)})).await;
    assert_eq!((status, body["errors"][0]["path"].as_str()), (422, Some("body")), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn audit_rows_go_with_their_action_and_request_ids_are_bounded() {
    let server = AdminServer::start().await;
    // A test push to an unknown user sends nothing, so it leaves no record either.
    let (status, _) =
        server.post("/admin/push/test", json!({"users": [Uuid::new_v4()], "title": "t", "body": "b"})).await;
    assert_eq!(status, 404);
    let (_, audit) = server.get("/admin/audit").await;
    assert_eq!(audit.as_array().map(Vec::len), Some(0), "{audit}");
    // A run started from the API has its record, naming the run.
    let (status, run) = server.post("/admin/jobs/streak-reset/run", json!({})).await;
    assert_eq!(status, 202);
    let (_, audit) = server.get("/admin/audit").await;
    assert_eq!(audit[0]["action"], "job.run");
    assert_eq!(audit[0]["details"]["run_id"], run["run_id"]);
    server.wait_for_run(run["run_id"].as_str().unwrap()).await;
    // A client's request id is kept when it is reasonable, replaced when it is not.
    let long = "x".repeat(8192);
    for (sent, kept) in [("req-1:abc", true), (long.as_str(), false), ("two words", false)] {
        let response = server
            .request(Method::POST, "/admin/jobs/streak-reset/pause")
            .header("x-request-id", sent)
            .send()
            .await
            .unwrap();
        let echoed = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_eq!(echoed == sent, kept, "{echoed}");
        assert!(echoed.len() <= admin::MAX_REQUEST_ID);
        send(server.request(Method::POST, "/admin/jobs/streak-reset/resume")).await;
    }
    let longest: i32 = db::query_scalar("SELECT max(length(request_id)) FROM hattrick_audit_log")
        .fetch_one(server.db.pool())
        .await
        .unwrap();
    assert!(longest as usize <= admin::MAX_REQUEST_ID);
    server.stop().await;
}
