use mirai_platform::config::DatabaseConfig;
use mirai_platform::db;
use mirai_platform::testing::TestDatabase;
use sqlx::migrate::Migrator;

#[tokio::test]
async fn migrations_are_idempotent() {
    let database = TestDatabase::create("platform").await;
    let pool = db::connect(&DatabaseConfig::with_url(database.url()))
        .await
        .unwrap();
    db::migrate(&pool, &Migrator::DEFAULT).await.unwrap();
    db::migrate(&pool, &Migrator::DEFAULT).await.unwrap();
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied, db::PLATFORM_MIGRATIONS.iter().count() as i64);
    let outbox: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(outbox, 0);
}

#[tokio::test]
async fn unique_violations_become_already_exists() {
    let database = TestDatabase::create("platform").await;
    let pool = db::connect(&DatabaseConfig::with_url(database.url()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE t (k TEXT PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO t VALUES ('a')")
        .execute(&pool)
        .await
        .unwrap();
    let err = sqlx::query("INSERT INTO t VALUES ('a')")
        .execute(&pool)
        .await
        .unwrap_err();
    assert!(db::is_unique_violation(&err));
    let status = db::status(err, "symbol AAPL");
    assert_eq!(status.code(), tonic::Code::AlreadyExists);
    assert_eq!(status.message(), "symbol AAPL already exists");

    let missing = sqlx::query("SELECT k FROM t WHERE k = 'zzz'")
        .fetch_one(&pool)
        .await
        .unwrap_err();
    assert_eq!(db::status(missing, "row").code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn an_unreachable_database_fails_after_the_connect_timeout() {
    let mut config = DatabaseConfig::with_url("postgres://postgres@127.0.0.1:1/none");
    config.connect_timeout = std::time::Duration::from_millis(300);
    assert!(db::connect(&config).await.is_err());
}
