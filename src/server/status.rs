//! The one place where errors of every layer become gRPC statuses.

use crate::collection::{CollectionError, SnapshotError};
use crate::encode::EncodeError;
use crate::pipeline::PipelineError;
use crate::store::StoreError;
use tonic::{Code, Status};

pub fn from_collection(e: CollectionError) -> Status {
    match e {
        CollectionError::NotFound(id) => Status::not_found(format!("item {id:?} not found")),
        CollectionError::UnknownSpace(s) => {
            Status::invalid_argument(format!("unknown vector space {s:?}"))
        }
        CollectionError::NoVector { id, space } => {
            Status::failed_precondition(format!("item {id:?} has no vector in space {space:?}"))
        }
        CollectionError::Store(e) => from_store(e),
        CollectionError::Index(e) => internal("index", e),
        CollectionError::Snapshot(e) => from_snapshot(e),
        e @ CollectionError::OverBudget(_) => Status::resource_exhausted(e.to_string()),
        CollectionError::Lexical(e) => internal("lexical index", e),
    }
}

/// A snapshot request that still names a server path (`SnapshotRequest.directory`).
pub fn snapshot_path_refused() -> Status {
    Status::invalid_argument(
        "server paths are not accepted; name the snapshot (SnapshotRequest.name)",
    )
}

pub fn from_snapshot(e: SnapshotError) -> Status {
    use std::io::ErrorKind;
    match &e {
        SnapshotError::BadName(_) => Status::invalid_argument(e.to_string()),
        // The path comes from the server's snapshot_dir, not from the request: the server's
        // setup is wrong (e.g. the directory was linked into the data directory after start).
        SnapshotError::BadTarget(_) | SnapshotError::InsideDataDir(_) => {
            Status::failed_precondition(e.to_string())
        }
        SnapshotError::TargetExists(_) | SnapshotError::TmpExists(_) => {
            Status::already_exists(e.to_string())
        }
        // Paths under the snapshot directory, which the response reports anyway; an admin
        // needs to know what is wrong with it to fix it.
        SnapshotError::Target { source, .. } => match source.kind() {
            ErrorKind::PermissionDenied
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::NotADirectory
            | ErrorKind::IsADirectory
            | ErrorKind::NotFound
            | ErrorKind::AlreadyExists
            | ErrorKind::DirectoryNotEmpty
            | ErrorKind::CrossesDevices => Status::failed_precondition(e.to_string()),
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => {
                Status::resource_exhausted(e.to_string())
            }
            _ => internal("snapshot", e),
        },
        SnapshotError::InterruptedRestore(_) => Status::failed_precondition(e.to_string()),
        _ => internal("snapshot", e),
    }
}

pub fn from_store(e: StoreError) -> Status {
    internal("store", e)
}

pub fn from_encode(e: EncodeError) -> Status {
    match e {
        EncodeError::InvalidInput(m) => Status::invalid_argument(m),
        EncodeError::TooLarge(m) => Status::invalid_argument(format!("input too large: {m}")),
        EncodeError::ModelUnavailable(m) => Status::unavailable(format!("model unavailable: {m}")),
        EncodeError::Shutdown => Status::unavailable("encoder is shutting down"),
        EncodeError::DeadlineExceeded => {
            Status::deadline_exceeded("deadline exceeded before encoding started")
        }
        other => internal("encoder", other),
    }
}

pub fn from_pipeline(e: PipelineError) -> Status {
    match e {
        PipelineError::InvalidArgument(m) => Status::invalid_argument(m),
        PipelineError::NotFound(m) => Status::not_found(m),
        PipelineError::Unimplemented(m) => Status::unimplemented(m),
        PipelineError::FailedPrecondition(m) => Status::failed_precondition(m),
        PipelineError::Unavailable(m) => Status::unavailable(m),
        PipelineError::Encode(e) => from_encode(e),
        PipelineError::Collection(e) => from_collection(e),
        PipelineError::Internal(m) => internal("pipeline", m),
    }
}

/// tonic reports a message over the size limit as OUT_OF_RANGE; gRPC's convention (and what
/// clients retry on) is RESOURCE_EXHAUSTED.
pub fn is_oversize(code: Code, message: &str) -> bool {
    code == Code::OutOfRange && message.contains("message length too large")
}

pub fn from_stream(status: Status) -> Status {
    if is_oversize(status.code(), status.message()) {
        Status::resource_exhausted(status.message().to_string())
    } else {
        status
    }
}

fn internal(layer: &str, e: impl std::fmt::Display) -> Status {
    // Internal details go to the log, not to a possibly public client.
    tracing::error!(layer, error = %e, "internal error");
    Status::internal(format!("internal {layer} error"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapping() {
        assert_eq!(
            from_collection(CollectionError::NotFound("x".into())).code(),
            Code::NotFound
        );
        assert_eq!(
            from_encode(EncodeError::InvalidInput("bad".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            from_pipeline(PipelineError::Unimplemented("x".into())).code(),
            Code::Unimplemented
        );
        assert_eq!(
            from_pipeline(PipelineError::FailedPrecondition("x".into())).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            from_pipeline(PipelineError::Unavailable("x".into())).code(),
            Code::Unavailable
        );
        let s = from_stream(Status::out_of_range(
            "Error, decoded message length too large: found 9 bytes",
        ));
        assert_eq!(s.code(), Code::ResourceExhausted);
        let target = |kind| SnapshotError::Target {
            path: "/x".into(),
            source: std::io::Error::from(kind),
        };
        assert_eq!(
            from_snapshot(target(std::io::ErrorKind::PermissionDenied)).code(),
            Code::FailedPrecondition
        );
        assert_eq!(
            from_snapshot(target(std::io::ErrorKind::StorageFull)).code(),
            Code::ResourceExhausted
        );
        assert_eq!(
            from_snapshot(SnapshotError::TargetExists("/x".into())).code(),
            Code::AlreadyExists
        );
        assert_eq!(
            from_snapshot(SnapshotError::BadName("../x".into())).code(),
            Code::InvalidArgument
        );
        assert_eq!(
            from_snapshot(SnapshotError::InsideDataDir("/d/s".into())).code(),
            Code::FailedPrecondition
        );
        assert_eq!(snapshot_path_refused().code(), Code::InvalidArgument);
        assert_eq!(
            from_collection(SnapshotError::TmpExists("/x.tmp".into()).into()).code(),
            Code::AlreadyExists
        );
    }
}
