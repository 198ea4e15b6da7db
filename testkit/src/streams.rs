//! Redis views tests share: a pool for any Redis URL and a stream's length, asked of Redis
//! directly (never through the queue crate).

/// A connection pool to the Redis at `url` (the shared one or a private `RedisServer`).
pub fn redis_pool(url: &str) -> deadpool_redis::Pool {
    deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap_or_else(|e| panic!("a Redis pool for {url}: {e}"))
}

/// `XLEN key` (0 when the stream does not exist).
pub async fn xlen(pool: &deadpool_redis::Pool, key: &str) -> u64 {
    let mut conn = pool.get().await.unwrap();
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}
