//! A throwaway cluster from the machine's binaries: what tests and the demo fall back on when no server runs.

use db::cluster::TempCluster;

#[tokio::test]
async fn a_throwaway_cluster_starts_serves_migrates_and_goes_away() {
    let root = std::env::temp_dir().join(format!("hattrick-cluster-test-{}", std::process::id()));
    let start_root = root.clone();
    let cluster = tokio::task::spawn_blocking(move || TempCluster::start(&start_root, 5432))
        .await
        .unwrap()
        .expect("start a cluster (initdb and pg_ctl must be installed)");
    assert!(cluster.is_running());

    let url = cluster.url("postgres");
    let mut migrator = db::migrate::Migrator::connect(&url).await.expect("connect over the private socket");
    let plan = migrator.plan().await.unwrap();
    migrator.apply(&plan).await.unwrap();
    drop(migrator);
    let pool = db::connect(&url, &db::PoolSettings::default()).await.unwrap();
    let zone: String = db::query_scalar("SHOW TimeZone").fetch_one(&pool).await.unwrap();
    assert_eq!(zone, "UTC", "every connection runs in UTC");
    pool.close().await;

    // Starting again on the same directory reuses the running server.
    let again = TempCluster::start(&root, 5432).expect("reuse");
    assert!(again.is_running());
    tokio::task::spawn_blocking(move || cluster.destroy(&root)).await.unwrap().expect("destroy");
    assert!(!again.is_running());
}
