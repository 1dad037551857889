//! The gateway's errors, mapped to gRPC status once, here.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("missing or invalid credentials")]
    Unauthenticated,
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The request is valid but the state refuses it (e.g. a used activation).
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("secret handling failed: {0}")]
    Secret(String),
    #[error("a service Vigil needs is unavailable: {0}")]
    Unavailable(String),
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// A statement shared with other requests (`vigil_runtime::batch`) failed.
    #[error("database error")]
    Batch(#[from] vigil_runtime::BatchError<sqlx::Error>),
    #[error("bus error")]
    Bus(#[from] vigil_bus::BusError),
}

impl From<GatewayError> for Status {
    fn from(error: GatewayError) -> Self {
        let code = match &error {
            GatewayError::Unauthenticated => Code::Unauthenticated,
            GatewayError::InvalidArgument(_) => Code::InvalidArgument,
            GatewayError::NotFound(_) => Code::NotFound,
            GatewayError::AlreadyExists(_) => Code::AlreadyExists,
            GatewayError::PermissionDenied(_) => Code::PermissionDenied,
            GatewayError::FailedPrecondition(_) => Code::FailedPrecondition,
            GatewayError::Unavailable(_) => Code::Unavailable,
            GatewayError::Database(_) | GatewayError::Batch(_) | GatewayError::Bus(_) | GatewayError::Secret(_) => {
                // Internal causes are logged with their chain, returned opaque.
                tracing::error!(error = ?error, "internal error");
                return Status::internal("internal error");
            }
        };
        Status::new(code, error.to_string())
    }
}

/// Maps a challenge-service reply error onto the gateway's errors.
pub fn from_rpc(error: vigil_proto::rpc::RpcError) -> GatewayError {
    match error.code.as_str() {
        "invalid_argument" => GatewayError::InvalidArgument(error.message),
        "already_exists" => GatewayError::AlreadyExists(error.message),
        "not_found" => GatewayError::NotFound(error.message),
        _ => GatewayError::Unavailable(format!("challenge service: {}", error.message)),
    }
}
