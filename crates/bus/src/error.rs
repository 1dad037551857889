#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("could not publish to JetStream: {0}")]
    Publish(String),
    #[error("JetStream error: {0}")]
    JetStream(String),
    #[error("malformed envelope: {0}")]
    Malformed(String),
    #[error("envelope holds `{actual}`, expected `{expected}`")]
    WrongType { expected: &'static str, actual: String },
}
