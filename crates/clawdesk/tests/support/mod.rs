//! What the CLI's end-to-end tests share: the Python with the client libraries that
//! scripts/setup-tests.sh installs.

use std::path::PathBuf;

/// The Python of the test venv (`$CLAWDESK_PYTHON`, else the one setup-tests.sh makes).
pub fn python() -> PathBuf {
    let path = std::env::var_os("CLAWDESK_PYTHON")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/clawdesk/py/bin/python"))
        })
        .expect("CLAWDESK_PYTHON or HOME");
    assert!(
        path.exists(),
        "{} is missing: run scripts/test.sh, which installs the Python clients",
        path.display()
    );
    path
}
