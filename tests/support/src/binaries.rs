//! Where the ringway package's binaries (`ringway`, `ringway-origin`) are. `env!
//! ("CARGO_BIN_EXE_…")` only reaches the integration tests of the package that owns the
//! binaries, not this library, so the path is found at run time: from
//! `CARGO_BIN_EXE_<name>` when cargo sets it for the running test (recent cargo does), else
//! next to the test's own executable (a test binary run by hand). Cargo builds a package's
//! binaries before its integration tests; nothing here builds anything.

use std::path::PathBuf;

/// The path of the package binary `name`.
pub fn binary(name: &str) -> PathBuf {
    match std::env::var_os(format!("CARGO_BIN_EXE_{name}")) {
        Some(path) => path.into(),
        None => binary_beside_test(name),
    }
}

/// The path of the package binary `name` worked out from the running test's own path:
/// cargo puts an integration test at `target/<profile>/deps/<test>-<hash>` and the
/// binaries at `target/<profile>/<name>`.
pub fn binary_beside_test(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let mut dir = exe.parent().expect("the test's directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "no {name} at {} (worked out from {}): cargo builds it before the tests",
        path.display(),
        exe.display()
    );
    path
}
