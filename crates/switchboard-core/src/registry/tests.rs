//! What only the registry's internals can show: a poisoned lock aborts the process.

use super::*;

/// Set in the child process the test below starts.
const CHILD: &str = "SWITCHBOARD_POISON_CHILD";

/// A panic inside the registry's critical section poisons its lock; the next use of
/// the registry aborts the process rather than serving half-updated rooms. Run in a
/// child process (this test's own binary), whose death by SIGABRT is the result.
#[test]
fn a_poisoned_registry_aborts_the_process() {
    if std::env::var_os(CHILD).is_some() {
        let reg = Registry::new(Limits::default());
        let held = reg.clone();
        let _ = std::thread::spawn(move || {
            held.with_lock_held(|| panic!("a bug inside the critical section"));
        })
        .join();
        let _ = reg.stats_now();
        // Not reached: the line above aborts.
        std::process::exit(0);
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "registry::tests::a_poisoned_registry_aborts_the_process",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(out.status.signal(), Some(6), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("lock was poisoned"), "{stderr}");
}
