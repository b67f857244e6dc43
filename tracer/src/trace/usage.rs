//! Exit codes: 2 for a mistake in how the tracer was called (a bad filter, an unknown
//! interface or namespace), as clap does for its own usage errors; 1 for a failure while
//! running (no privilege, no BTF, an unwritable file).

use crate::{kernel::filter::FilterError, kernel::netns::NetnsError};

/// A usage mistake found after parsing the command line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

pub const USAGE: u8 = 2;
pub const RUNTIME: u8 = 1;

/// The exit code for `err`, looking through its chain of causes.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let usage = err.chain().any(|cause| {
        cause.is::<Usage>()
            || matches!(
                cause.downcast_ref::<NetnsError>(),
                Some(NetnsError::Unknown(_))
            )
            || cause
                .downcast_ref::<FilterError>()
                .is_some_and(|e| !matches!(e, FilterError::Library(_)))
    });
    if usage {
        USAGE
    } else {
        RUNTIME
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_mistakes_exit_2_and_failures_1() {
        let unknown = anyhow::Error::new(NetnsError::Unknown("nope".into()));
        assert_eq!(exit_code(&unknown), USAGE);
        let wrapped = anyhow::Error::new(Usage("unknown interface".into())).context("tracing");
        assert_eq!(exit_code(&wrapped), USAGE);
        let missing = anyhow::Error::new(FilterError::Library("no libpcap".into()));
        assert_eq!(exit_code(&missing), RUNTIME);
        assert_eq!(exit_code(&anyhow::anyhow!("no privilege")), RUNTIME);
    }
}
