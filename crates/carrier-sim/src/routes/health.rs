/// Liveness and readiness: the simulator has no dependencies to wait for.
pub async fn ok() -> &'static str {
    "ok"
}
