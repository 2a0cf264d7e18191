use serde::{Deserialize, Serialize};

/// The error codes of docs/protocol.md; these strings are the wire contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownOp,
    NotRegistered,
    BadName,
    NameTaken,
    AuthFailed,
    NoSuchUser,
    NoSuchRoom,
    RoomExists,
    NotMember,
    NotOwner,
    TooLarge,
    SlowConsumer,
    ServerFull,
    Timeout,
    ShuttingDown,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::BadName => "bad_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::NoSuchUser => "no_such_user",
            ErrorCode::NoSuchRoom => "no_such_room",
            ErrorCode::RoomExists => "room_exists",
            ErrorCode::NotMember => "not_member",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ServerFull => "server_full",
            ErrorCode::Timeout => "timeout",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error as it travels on the wire: a machine code and a sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_str_matches_serde() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::UnknownOp,
            ErrorCode::NotRegistered,
            ErrorCode::NoSuchUser,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
        }
    }
}
