//! Records the git commit the binary is built from (`HATTRICK_GIT_COMMIT`), for `--version` and the
//! `hattrick_build_info` metric. Outside a git checkout (a source tarball, `cargo install` from a registry) the
//! commit is `HATTRICK_GIT_COMMIT` from the build's environment, else `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HATTRICK_GIT_COMMIT");
    let commit = std::env::var("HATTRICK_GIT_COMMIT").ok().filter(|c| !c.is_empty()).or_else(|| {
        let output = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).output().ok()?;
        let commit = String::from_utf8(output.stdout).ok()?.trim().to_owned();
        (output.status.success() && !commit.is_empty()).then_some(commit)
    });
    if let Some(git_dir) = Command::new("git")
        .args(["rev-parse", "--absolute-git-dir"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
    {
        let git_dir = git_dir.trim();
        // A new commit moves HEAD or the branch it points to.
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
    }
    println!("cargo:rustc-env=HATTRICK_GIT_COMMIT={}", commit.as_deref().unwrap_or("unknown"));
}
