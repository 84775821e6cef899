//! The Python that multilang tests run: the virtualenv with PyPI's pystorm
//! that `scripts/python-env` makes (once) and prints.
#![allow(dead_code)]

use std::process::Command;
use std::sync::OnceLock;

/// The virtualenv's python.
pub fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let root = env!("CARGO_MANIFEST_DIR");
        let out = Command::new(format!("{root}/scripts/python-env"))
            .output()
            .expect("run scripts/python-env");
        assert!(
            out.status.success(),
            "scripts/python-env failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}
