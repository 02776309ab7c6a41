//! The FCM transport against the fake FCM over a real socket: OAuth end to end (refresh, a wrong key refused),
//! and every error class of docs/push.md classified and acted on.

use std::collections::BTreeMap;
use std::time::Duration;

use push::fake::{FakeConfig, FakeFcm};
use push::{FcmTransport, Outcome, PushMessage, ServiceAccount, Transport};

fn message(token: &str) -> PushMessage {
    PushMessage {
        token: token.to_owned(),
        title: "Yeni Rozet!".to_owned(),
        body: "Kazandın".to_owned(),
        image: None,
        data: BTreeMap::from([("deepLink".to_owned(), "goalgpt://badges".to_owned())]),
        ttl: None,
        collapse_key: None,
        analytics_label: None,
    }
}

async fn fake(config: FakeConfig) -> FakeFcm {
    FakeFcm::bind("127.0.0.1:0", config).await.unwrap()
}

fn transport(fake: &FakeFcm, key_file: &str) -> FcmTransport {
    let account = ServiceAccount::from_json(key_file).unwrap();
    FcmTransport::new(push::Credentials::ServiceAccount(account), &fake.endpoint(), Duration::from_secs(10)).unwrap()
}

#[tokio::test]
async fn oauth_works_end_to_end_and_the_token_is_cached_then_refreshed() {
    // Tokens live 2 s here, less than the 300 s refresh margin: such a token is replaced after half its life.
    let fake = fake(FakeConfig { token_lifetime: Duration::from_secs(2), ..FakeConfig::default() }).await;
    let fcm = transport(&fake, &fake.service_account_json());
    assert_eq!(fcm.send(&message("a")).await, Outcome::Delivered);
    assert_eq!(fcm.send(&message("b")).await, Outcome::Delivered);
    assert_eq!(fcm.tokens().fetched(), 1, "the access token is cached");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(fcm.send(&message("c")).await, Outcome::Delivered);
    assert_eq!(fcm.tokens().fetched(), 2, "refreshed before expiry");
    let stats = fake.stats();
    assert_eq!(stats.accepted, 3);
    assert_eq!(stats.tokens_issued, 2);
    assert_eq!(stats.grants_refused, 0);
}

#[tokio::test]
async fn repeats_with_one_collapse_key_show_once_and_labels_are_counted() {
    let fake = fake(FakeConfig::default()).await;
    let fcm = transport(&fake, &fake.service_account_json());
    let row = |token: &str, dedupe: &str| PushMessage {
        collapse_key: Some(push::message::collapse_key(dedupe)),
        analytics_label: Some(push::message::analytics_label(None, None, "badge_unlock")),
        ..message(token)
    };
    // One row sent twice to a device (a crash between the send and its record), another row, another device.
    for m in [row("a", "badge:1:u1"), row("a", "badge:1:u1"), row("a", "badge:2:u1"), row("b", "badge:1:u1")] {
        assert_eq!(fcm.send(&m).await, Outcome::Delivered);
    }
    assert_eq!(fcm.send(&message("c")).await, Outcome::Delivered, "no collapse key: shown on its own");
    let stats = fake.stats();
    assert_eq!(stats.accepted, 5);
    assert_eq!(stats.visible, 4, "the repeat folds into the notification already shown");
    assert_eq!(stats.per_label.get("badge_unlock"), Some(&4));
    assert_eq!(stats.per_label.get("-"), Some(&1));

    // Options FCM would refuse are refused as FCM refuses them, and not counted.
    let long_topic = PushMessage { collapse_key: Some("k".repeat(33)), ..message("a") };
    let bad_label = PushMessage { analytics_label: Some("a label".into()), ..message("a") };
    for m in [long_topic, bad_label] {
        assert!(matches!(fcm.send(&m).await, Outcome::Failed { code } if code == "INVALID_ARGUMENT"));
    }
    assert_eq!(fake.stats().accepted, 5);
}

#[tokio::test]
async fn a_key_the_fake_does_not_trust_is_refused_and_nothing_is_sent() {
    let fake = fake(FakeConfig::default()).await;
    let fcm = transport(&fake, &fake.wrong_service_account_json());
    assert_eq!(fcm.send(&message("a")).await, Outcome::AuthFailure { code: "OAUTH".into() });
    let stats = fake.stats();
    assert_eq!(stats.grants_refused, 1);
    assert_eq!(stats.accepted, 0);
}

#[tokio::test]
async fn every_error_class_is_classified_as_spec_4_says() {
    let fake = fake(FakeConfig {
        unregistered_prefix: Some("dead-".into()),
        invalid_prefix: Some("bad-".into()),
        auth_error_prefix: Some("apns-".into()),
        ..FakeConfig::default()
    })
    .await;
    let fcm = transport(&fake, &fake.service_account_json());
    let cases: [(&str, Outcome); 4] = [
        ("ok-1", Outcome::Delivered),
        ("dead-1", Outcome::DeactivateToken { code: "UNREGISTERED".into() }),
        ("bad-1", Outcome::DeactivateToken { code: "INVALID_ARGUMENT".into() }),
        ("apns-1", Outcome::AuthFailure { code: "THIRD_PARTY_AUTH_ERROR".into() }),
    ];
    for (token, expected) in cases {
        assert_eq!(fcm.send(&message(token)).await, expected, "token {token}");
    }
    let stats = fake.stats();
    assert_eq!(stats.accepted, 1);
    assert_eq!(stats.errors.get("UNREGISTERED"), Some(&1));
    assert_eq!(stats.errors.get("INVALID_ARGUMENT"), Some(&1));
    assert_eq!(stats.errors.get("THIRD_PARTY_AUTH_ERROR"), Some(&1));
}

#[tokio::test]
async fn quota_and_unavailable_are_retried_with_retry_after() {
    let fcm_fake = fake(FakeConfig { rate_429: 1.0, retry_after_secs: 7, ..FakeConfig::default() }).await;
    let fcm = transport(&fcm_fake, &fcm_fake.service_account_json());
    // Quota backs off at least 60 s whatever Retry-After says (docs/push.md).
    assert_eq!(
        fcm.send(&message("a")).await,
        Outcome::Retry { code: "QUOTA_EXCEEDED".into(), after: Some(Duration::from_secs(60)) }
    );
    let unavailable = fake(FakeConfig { rate_503: 1.0, retry_after_secs: 7, ..FakeConfig::default() }).await;
    let fcm = transport(&unavailable, &unavailable.service_account_json());
    assert_eq!(
        fcm.send(&message("a")).await,
        Outcome::Retry { code: "UNAVAILABLE".into(), after: Some(Duration::from_secs(7)) }
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_failure() {
    let fake = fake(FakeConfig::default()).await;
    let account = ServiceAccount::from_json(&fake.service_account_json()).unwrap();
    // A port nobody listens on (bound then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let fcm = FcmTransport::new(
        push::Credentials::ServiceAccount(account),
        &format!("http://127.0.0.1:{port}"),
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(fcm.send(&message("a")).await, Outcome::Retry { code: "NETWORK".into(), after: None });
}

#[tokio::test]
async fn an_endpoint_that_makes_no_url_is_refused_when_the_transport_is_built() {
    let fake = fake(FakeConfig::default()).await;
    let account = ServiceAccount::from_json(&fake.service_account_json()).unwrap();
    // Passes the configuration's scheme check, but every request to it would fail.
    let error =
        FcmTransport::new(push::Credentials::ServiceAccount(account), "https://fcm example", Duration::from_secs(2))
            .expect_err("a host with a space is no URL");
    assert!(matches!(error, push::TransportError::Endpoint { .. }), "{error:?}");
    assert!(error.to_string().contains("\"https://fcm example\""), "{error}");
}
