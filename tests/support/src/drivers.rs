//! The two I/O drivers every end-to-end test runs under, and `both_drivers!`, which turns one
//! test body into a test per driver (the way monoio tests itself). The driver reaches
//! ringway through `RINGWAY_IO_DRIVER`; nothing here starts anything.

/// The I/O driver a gateway under test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Driver {
    IoUring,
    Legacy,
}

impl Driver {
    /// The value of `RINGWAY_IO_DRIVER` that selects this driver.
    pub fn env(self) -> &'static str {
        match self {
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }
}

/// Generates `<name>::io_uring` and `<name>::legacy` tests from one body taking a `Driver`.
#[macro_export]
macro_rules! both_drivers {
    ($( $(#[$meta:meta])* fn $name:ident($d:ident) $body:block )*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                fn run($d: $crate::Driver) $body
                #[test]
                $(#[$meta])*
                fn io_uring() { run($crate::Driver::IoUring) }
                #[test]
                $(#[$meta])*
                fn legacy() { run($crate::Driver::Legacy) }
            }
        )*
    };
}
