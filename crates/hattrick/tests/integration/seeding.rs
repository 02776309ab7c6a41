//! `hattrick seed` against real PostgreSQL: determinism, the ledger invariants, the schema left whole, the guards.

use db::Pool;
use seed::{SeedOptions, SeedReport, seed_database};
use sqlx::AssertSqlSafe;
use testkit::TestDb;

/// Every table the seed writes.
const TABLES: &[&str] = &[
    "customer_users",
    "customer_oauth_identities",
    "customer_push_tokens",
    "customer_xp",
    "customer_xp_transactions",
    "customer_credits",
    "customer_credit_transactions",
    "customer_daily_rewards",
    "customer_ad_views",
    "match_comments",
    "match_comment_likes",
    "customer_predictions",
    "referrals",
    "customer_subscriptions",
    "partners",
    "badges",
    "subscription_plans",
    "scheduled_notifications",
];

async fn counts(pool: &Pool) -> Vec<(String, i64)> {
    let mut counts = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT count(*) FROM {table}");
        let rows: i64 = db::query_scalar(AssertSqlSafe(sql)).fetch_one(pool).await.expect("count rows");
        counts.push(((*table).to_owned(), rows));
    }
    counts
}

/// Aggregates that must not depend on "now": sums of amounts and counts of states.
async fn aggregates(pool: &Pool) -> Vec<i64> {
    db::query_as::<(i64, i64, i64, i64, i64, i64, i64)>(
        "SELECT (SELECT sum(balance)::bigint FROM customer_credits),
                (SELECT sum(lifetime_earned)::bigint FROM customer_credits),
                (SELECT sum(xp_points)::bigint FROM customer_xp),
                (SELECT sum(like_count)::bigint FROM match_comments),
                (SELECT count(*) FROM customer_predictions WHERE is_correct),
                (SELECT count(*) FROM referrals WHERE status = 'rewarded'),
                (SELECT count(*) FROM customer_subscriptions WHERE status = 'active' AND expired_at > now())",
    )
    .fetch_one(pool)
    .await
    .map(|(a, b, c, d, e, f, g)| vec![a, b, c, d, e, f, g])
    .expect("aggregates")
}

fn report_matches_database(report: &SeedReport, counts: &[(String, i64)]) {
    for (table, rows) in counts {
        assert_eq!(report.rows(table), Some(*rows as u64), "{table}: the report and the table disagree");
    }
}

async fn scalar(pool: &Pool, sql: &'static str) -> i64 {
    db::query_scalar(sql).fetch_one(pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_seed_gives_the_same_population_and_the_ledgers_balance() {
    let (first, second) = tokio::join!(TestDb::new(), TestDb::new());
    let options = SeedOptions::new(20_000, 7);
    let report = seed_database(first.url(), &options).await.expect("seed the first database");
    seed_database(second.url(), &options).await.expect("seed the second database");

    let first_counts = counts(first.pool()).await;
    assert_eq!(first_counts, counts(second.pool()).await, "row counts differ between two runs of one seed");
    assert_eq!(aggregates(first.pool()).await, aggregates(second.pool()).await);
    report_matches_database(&report, &first_counts);
    assert_eq!(report.rows("customer_users"), Some(20_000));
    assert_eq!(report.rows("partners"), Some(10));
    assert_eq!(report.rows("badges"), Some(34));
    for (table, rows) in &first_counts {
        assert!(*rows > 0, "{table} is empty");
    }

    let pool = first.pool();
    // Credits: balance = sum of the ledger, lifetime earned / spent = sums of the positive / negative amounts.
    let credit_drift = scalar(
        pool,
        "SELECT count(*) FROM customer_credits c
         LEFT JOIN (SELECT customer_user_id, sum(amount) AS total,
                           coalesce(sum(amount) FILTER (WHERE amount > 0), 0) AS earned,
                           coalesce(-sum(amount) FILTER (WHERE amount < 0), 0) AS spent
                    FROM customer_credit_transactions GROUP BY customer_user_id) l USING (customer_user_id)
         WHERE c.balance <> coalesce(l.total, 0) OR c.lifetime_earned <> coalesce(l.earned, 0)
            OR c.lifetime_spent <> coalesce(l.spent, 0)",
    )
    .await;
    assert_eq!(credit_drift, 0, "users whose credits differ from their ledger");
    // The balance chain is exact and never negative.
    let broken_chain = scalar(
        pool,
        "SELECT count(*) FROM (
             SELECT balance_before, balance_after, amount,
                    lag(balance_after) OVER (PARTITION BY customer_user_id ORDER BY created_at, id) AS previous
             FROM customer_credit_transactions) t
         WHERE balance_before + amount <> balance_after OR balance_after < 0
            OR balance_before <> coalesce(previous, 0)",
    )
    .await;
    assert_eq!(broken_chain, 0, "ledger rows whose balance_before/after do not chain");
    // XP: points = sum of the XP ledger, total earned >= points, level matches the points.
    let xp_drift = scalar(
        pool,
        "SELECT count(*) FROM customer_xp x
         LEFT JOIN (SELECT customer_user_id, sum(xp_amount) AS total FROM customer_xp_transactions
                    GROUP BY customer_user_id) l USING (customer_user_id)
         WHERE x.xp_points <> coalesce(l.total, 0) OR x.total_earned < x.xp_points
            OR x.level <> CASE WHEN xp_points >= 25000 THEN 'vip_elite' WHEN xp_points >= 10000 THEN 'diamond'
                               WHEN xp_points >= 5000 THEN 'platinum' WHEN xp_points >= 2000 THEN 'gold'
                               WHEN xp_points >= 500 THEN 'silver' ELSE 'bronze' END
            OR x.longest_streak_days < x.current_streak_days",
    )
    .await;
    assert_eq!(xp_drift, 0, "users whose XP differs from their ledger or level");
    assert_eq!(scalar(pool, "SELECT count(DISTINCT level) FROM customer_xp").await, 6, "every level is populated");
    let wrong_progress = scalar(
        pool,
        "SELECT count(*) FROM customer_xp WHERE level_progress <> hattrick_level_progress(xp_points)
            OR next_level_xp IS DISTINCT FROM hattrick_next_level_xp(xp_points)",
    )
    .await;
    assert_eq!(wrong_progress, 0, "level_progress and next_level_xp as the rewards ledger computes them");
    let wrong_likes = scalar(
        pool,
        "SELECT count(*) FROM match_comments c
         WHERE c.like_count <> (SELECT count(*) FROM match_comment_likes l WHERE l.comment_id = c.id)",
    )
    .await;
    assert_eq!(wrong_likes, 0, "comments whose like_count is not their number of likes");
    let referral_states = scalar(
        pool,
        "SELECT count(DISTINCT (status, tier)) FROM referrals
         WHERE (status, tier) IN (('pending', 1), ('completed', 2), ('rewarded', 3), ('expired', 1))",
    )
    .await;
    assert_eq!(referral_states, 4, "referrals in every status, each with its tier");
    assert_eq!(scalar(pool, "SELECT count(*) FROM referrals WHERE tier NOT IN (1, 2, 3)").await, 0);
    assert!(scalar(pool, "SELECT count(*) FROM referrals WHERE status = 'pending' AND expires_at > now()").await > 0);
    assert!(scalar(pool, "SELECT count(*) FROM referrals WHERE status = 'pending' AND expires_at < now()").await > 0);
    assert!(
        scalar(
            pool,
            "SELECT count(*) FROM customer_subscriptions WHERE status = 'active' AND NOT auto_renew_enabled
             AND expired_at BETWEEN now() + interval '1 day' AND now() + interval '4 days'",
        )
        .await
            > 0,
        "some VIPs expire within days with auto-renew off"
    );
    assert_eq!(scalar(pool, "SELECT count(*) FROM customer_badges").await, 0, "badges are left to the sweep");

    // Everything dropped for the load is back, as the schema file wants it.
    let mut migrator = db::migrate::Migrator::connect(first.url()).await.expect("connect the migrator");
    let plan = migrator.plan().await.expect("plan");
    assert!(plan.is_empty(), "the schema is not whole after seeding:\n{plan}");
    let constraints = scalar(
        pool,
        "SELECT count(*) FROM pg_constraint
         WHERE conname IN ('customer_users_email_key', 'match_comment_likes_comment_user_key',
                           'customer_predictions_user_match_prediction_key', 'match_comment_likes_comment_fkey')
           AND convalidated",
    )
    .await;
    assert_eq!(constraints, 4, "unique constraints and foreign keys are restored as constraints");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_users_is_refused_unless_forced() {
    let db = TestDb::new().await;
    seed_database(db.url(), &SeedOptions::new(300, 1)).await.expect("seed");
    let before = counts(db.pool()).await;

    let error = seed_database(db.url(), &SeedOptions::new(300, 2)).await.expect_err("a second seed is refused");
    assert!(format!("{error:#}").contains("already holds users"), "unexpected error: {error:#}");
    assert_eq!(counts(db.pool()).await, before, "a refused seed wrote nothing");

    let same_seed = SeedOptions { force: true, ..SeedOptions::new(300, 1) };
    let error = seed_database(db.url(), &same_seed).await.expect_err("the same seed twice would collide");
    assert!(format!("{error:#}").contains("already loaded"), "unexpected error: {error:#}");

    let forced = SeedOptions { force: true, ..SeedOptions::new(300, 2) };
    seed_database(db.url(), &forced).await.expect("a forced seed of another seed adds its population");
    assert_eq!(scalar(db.pool(), "SELECT count(*) FROM customer_users").await, 600);
    assert_eq!(scalar(db.pool(), "SELECT count(*) FROM badges").await, 34, "the default badges are installed once");

    let error = seed_database(db.url(), &SeedOptions::new(0, 3)).await.expect_err("zero users is an error");
    assert!(format!("{error:#}").contains("at least 1"), "unexpected error: {error:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn different_seeds_give_different_populations() {
    let (first, second) = tokio::join!(TestDb::new(), TestDb::new());
    seed_database(first.url(), &SeedOptions::new(2_000, 1)).await.expect("seed 1");
    seed_database(second.url(), &SeedOptions::new(2_000, 2)).await.expect("seed 2");
    assert_eq!(
        scalar(first.pool(), "SELECT count(*) FROM customer_users").await,
        scalar(second.pool(), "SELECT count(*) FROM customer_users").await
    );
    assert_ne!(aggregates(first.pool()).await, aggregates(second.pool()).await);
    assert_ne!(counts(first.pool()).await, counts(second.pool()).await);
}
