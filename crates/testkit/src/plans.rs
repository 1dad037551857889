//! The plans PostgreSQL makes for a statement, as the ones it caches for a
//! prepared statement would be: a hot statement must keep its shape (a key
//! lookup, say) whatever the statistics said when its plan was made.

use sqlx::{Connection, PgConnection};

/// `sql`'s plan as `EXPLAIN` prints it, for each way a prepared statement
/// is planned: with the call's values (`force_custom_plan`) and once for
/// every call (`force_generic_plan`, the plan a connection caches after five
/// calls). `args` are the values of one call, as SQL literals. Runs on
/// `conn` as it is: inside a transaction, the plans see its settings.
pub async fn prepared_plans(
    conn: &mut PgConnection,
    sql: &str,
    args: &str,
) -> sqlx::Result<Vec<(&'static str, String)>> {
    let mut plans = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        sqlx::raw_sql(&format!("SET plan_cache_mode = {mode}; PREPARE vigil_plan AS {sql}"))
            .execute(&mut *conn)
            .await?;
        let lines: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN EXECUTE vigil_plan ({args})"))
            .fetch_all(&mut *conn)
            .await?;
        // A prepared statement outlives a transaction; the setting may not.
        sqlx::raw_sql("DEALLOCATE vigil_plan; RESET plan_cache_mode")
            .execute(&mut *conn)
            .await?;
        plans.push((mode, lines.join("\n")));
    }
    Ok(plans)
}

/// [`prepared_plans`] of a retention rule's `delete`, as
/// `vigil_runtime::retention::prune` runs it: in a transaction begun with
/// `begin` (that module's `BATCH_TRANSACTION`), for a cutoff of now, the
/// nil UUID as the key floor and a batch of 1,000 rows.
pub async fn retention_batch_plans(
    conn: &mut PgConnection,
    begin: &'static str,
    delete: &str,
) -> sqlx::Result<Vec<(&'static str, String)>> {
    let mut tx = conn.begin_with(begin).await?;
    prepared_plans(&mut tx, delete, "now(), '00000000-0000-0000-0000-000000000000', 1000").await
}
