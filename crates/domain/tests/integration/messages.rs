//! The push catalogue (docs/push.md "Messages and languages"): each user reads a push in their locale, else its
//! language, else English, else Turkish; a deployment's text replaces a built-in one; the app's own level-ups
//! speak the same languages.

use chrono::Utc;
use domain::messages::{self, NewText, STREAK_WARNING};
use testkit::{NewUser, TestDb};
use uuid::Uuid;

async fn put(db: &TestDb, kind: &str, locale: &str, title: &str, body: &str) {
    let text = NewText { kind: kind.into(), locale: locale.into(), title: title.into(), body: body.into() }
        .checked()
        .expect("a valid text");
    // In a transaction, as hattrick writes it (an unnamed statement on a pooled connection outside one would not
    // survive a transaction pooler).
    let mut tx = db.pool().begin().await.unwrap();
    messages::put(&mut tx, &text, Utc::now()).await.unwrap();
    tx.commit().await.unwrap();
}

/// Writes a streak warning for each user through the outbox, as the job does, and returns each one's title and body.
async fn streak_warnings(db: &TestDb, users: &[Uuid], key: &str) -> Vec<(String, String)> {
    let mut tx = db.pool().begin().await.unwrap();
    domain::scratch::prepare(&mut tx).await.unwrap();
    for user in users {
        db::query("INSERT INTO hattrick_push_batch (dedupe_key, customer_user_id, vars) VALUES ($1, $2, $3)")
            .bind(format!("{key}:{user}"))
            .bind(user)
            .bind(serde_json::json!({"streak": "9", "hours": "2"}))
            .execute(&mut *tx)
            .await
            .unwrap();
    }
    let written =
        domain::outbox::flush(&mut tx, &STREAK_WARNING, domain::outbox::Category::Engagement, Utc::now(), true)
            .await
            .unwrap();
    assert_eq!(written, users.len() as i64);
    tx.commit().await.unwrap();
    let mut texts = Vec::new();
    for user in users {
        texts.push(
            db::query_as("SELECT title, body FROM push_outbox WHERE dedupe_key = $1")
                .bind(format!("{key}:{user}"))
                .fetch_one(db.pool())
                .await
                .unwrap(),
        );
    }
    texts
}

#[tokio::test]
async fn the_built_in_catalogue_is_complete_and_every_text_uses_only_its_kinds_placeholders() {
    let db = TestDb::new().await;
    let texts = messages::load(db.pool()).await.unwrap();
    assert_eq!(texts.len(), messages::KINDS.len() * 2, "Turkish and English for every kind");
    assert_eq!(messages::catalogue_problems(&texts), Vec::<String>::new());
    // Every placeholder a kind carries is used by its built-in texts: none is declared for nothing.
    for kind in messages::KINDS {
        for name in kind.placeholders() {
            let used = texts
                .iter()
                .filter(|t| t.kind == kind.kind)
                .any(|t| t.title.contains(&format!("{{{name}}}")) || t.body.contains(&format!("{{{name}}}")));
            assert!(used, "{}: {{{name}}} is used by no built-in text", kind.kind);
        }
    }
}

#[tokio::test]
async fn each_user_reads_the_locale_then_the_language_then_english_then_turkish() {
    let db = TestDb::new().await;
    let mut users = Vec::new();
    let locales = ["tr", "TR", "en-GB", "de", "de-AT", "pt_BR", "pt-PT", "fr"];
    for locale in locales {
        users.push(NewUser::new().locale(locale).insert(db.pool()).await);
    }
    put(&db, "streak_warning", "de", "Serien-Alarm 🔥", "{streak} Tage, noch {hours} Stunden").await;
    put(&db, "streak_warning", "pt-BR", "Sequência 🔥", "{streak} dias, faltam {hours} horas").await;
    put(&db, "streak_warning", "en", "Streak! 🔥", "{streak} days, {hours} hours left").await;

    let turkish = ("Streak Uyarısı 🔥".to_owned(), "9 günlük serini kaybetme! Gece yarısına 2 saat kaldı.".to_owned());
    let german = ("Serien-Alarm 🔥".to_owned(), "9 Tage, noch 2 Stunden".to_owned());
    let brazilian = ("Sequência 🔥".to_owned(), "9 dias, faltam 2 horas".to_owned());
    let english = ("Streak! 🔥".to_owned(), "9 days, 2 hours left".to_owned());
    let written = streak_warnings(&db, &users, "first").await;
    // A batch picks by joins, a single render by hattrick_message(): the same text for every locale.
    let vars = [("streak", "9"), ("hours", "2")].map(|(k, v)| (k.to_owned(), v.to_owned())).into();
    for (locale, text) in locales.iter().zip(&written) {
        let rendered = messages::render(db.pool(), &STREAK_WARNING, locale, &vars).await.unwrap().unwrap();
        assert_eq!((&rendered.title, &rendered.body), (&text.0, &text.1), "{locale}");
    }
    assert_eq!(
        written,
        [
            turkish.clone(),
            turkish.clone(),
            english.clone(),
            german.clone(),
            german,
            brazilian,
            english.clone(),
            english
        ],
        "tr, TR, en-GB (the deployment's English), de, de-AT, pt_BR, pt-PT and fr (English: no Portuguese)"
    );

    // Removing the deployment's English brings the built-in one back.
    let mut tx = db.pool().begin().await.unwrap();
    assert_eq!(messages::remove(&mut tx, Some("streak_warning"), "en").await.unwrap(), 1);
    tx.commit().await.unwrap();
    let french = streak_warnings(&db, &users[7..], "second").await;
    assert_eq!(french[0].0, "Streak alert 🔥");
    assert_eq!(french[0].1, "Don't lose your 9-day streak! 2 hours left until midnight.");
}

#[tokio::test]
async fn the_apps_own_level_ups_are_written_in_the_users_language() {
    let db = TestDb::new().await;
    let german = NewUser::new().locale("de_CH").insert(db.pool()).await;
    let turkish = db.user().await;
    put(&db, "level_up", "de", "Level aufgestiegen! ⬆️", "Du hast {name_en} erreicht! 🎉").await;
    for user in [german, turkish] {
        db::query("SELECT hattrick_grant_xp($1, 600, 'admin_grant', 'k')").bind(user).execute(db.pool()).await.unwrap();
    }
    let pushed: Vec<(Uuid, String, String)> =
        db::query_as("SELECT customer_user_id, title, body FROM push_outbox WHERE data ->> 'type' = 'level_up'")
            .fetch_all(db.pool())
            .await
            .unwrap();
    let of = |user| pushed.iter().find(|p| p.0 == user).map(|p| (p.1.as_str(), p.2.as_str()));
    assert_eq!(of(german), Some(("Level aufgestiegen! ⬆️", "Du hast Silver erreicht! 🎉")));
    assert_eq!(of(turkish), Some(("Seviye Atladın! ⬆️", "Gümüş seviyesine ulaştın! 🎉")));
}

#[tokio::test]
async fn a_level_up_paid_by_a_job_is_the_same_push_as_one_paid_by_the_apps_own_call() {
    let db = TestDb::new().await;
    put(&db, "level_up", "de", "Level aufgestiegen! ⬆️", "Du hast {name_en} erreicht! 🎉").await;
    let (by_app, by_job) = (
        NewUser::new().locale("de_CH").insert(db.pool()).await,
        NewUser::new().locale("de_CH").insert(db.pool()).await,
    );
    db::query("SELECT hattrick_grant_xp($1, 2500, 'admin_grant', 'k')").bind(by_app).execute(db.pool()).await.unwrap();
    let mut tx = db.pool().begin().await.unwrap();
    domain::scratch::prepare(&mut tx).await.unwrap();
    db::query(
        "INSERT INTO hattrick_xp_grants (idempotency_key, customer_user_id, xp_amount, transaction_type)
         VALUES ('k', $1, 2500, 'admin_grant')",
    )
    .bind(by_job)
    .execute(&mut *tx)
    .await
    .unwrap();
    let applied = domain::ledger::apply(&mut tx, Utc::now(), true).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(applied.level_ups, 2, "silver and gold");
    let pushes = |user: Uuid| {
        db::query_as::<(String, String, String, String, Option<String>, serde_json::Value)>(
            "SELECT category, title, body, deep_link, image_url, data FROM push_outbox
             WHERE customer_user_id = $1 ORDER BY dedupe_key",
        )
        .bind(user)
        .fetch_all(db.pool())
    };
    let (app, job) = (pushes(by_app).await.unwrap(), pushes(by_job).await.unwrap());
    assert_eq!(app.len(), 2);
    assert_eq!(job, app, "the same texts, link and data, whoever paid the level");
    assert_eq!((job[0].1.as_str(), job[0].2.as_str()), ("Level aufgestiegen! ⬆️", "Du hast Gold erreicht! 🎉"));
}

#[tokio::test]
async fn a_text_written_around_hattrick_is_caught_by_the_start_up_check_and_rendering_shows_fallbacks() {
    let db = TestDb::new().await;
    // Written with SQL, not through hattrick: a placeholder streak warnings do not carry.
    db::query("INSERT INTO hattrick_messages (kind, locale, title, body) VALUES ('streak_warning', 'it', 'Serie', '{giorni}')")
        .execute(db.pool())
        .await
        .unwrap();
    let texts = messages::load(db.pool()).await.unwrap();
    assert_eq!(
        messages::catalogue_problems(&texts),
        ["streak_warning/it: body: {giorni} is not a placeholder of streak_warning (it has {streak}, {hours})"]
    );
    // The locale a table refuses.
    let bad =
        db::query("INSERT INTO hattrick_messages (kind, locale, title, body) VALUES ('welcome_vip', 'DE', 'a', 'b')")
            .execute(db.pool())
            .await
            .unwrap_err();
    assert!(bad.to_string().contains("hattrick_messages_locale_check"), "{bad}");

    let vars = Default::default();
    let rendered = messages::render(db.pool(), &STREAK_WARNING, "pt_BR", &vars).await.unwrap().unwrap();
    assert_eq!((rendered.locale.as_str(), rendered.text_locale.as_str()), ("pt-br", "en"));
    assert_eq!(rendered.body, "Don't lose your 7-day streak! 2 hours left until midnight.", "the kind's examples");
}
