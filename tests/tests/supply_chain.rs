//! Supply chain: scripts/provision.sh unpacks the Elasticsearch zip only when its SHA-512 is the
//! pinned one. Runs the script's own function (`unpack_verified_zip`) on real files: the cached
//! Maven artifact passes the pinned digest and, with one byte flipped, is refused with nothing
//! unpacked; a small zip made here shows the same function does unpack what matches.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `bash -c SCRIPT` with scripts/lib/common.sh and scripts/provision.sh sourced, as setup.sh does.
fn provision(script: &str, args: &[&Path]) -> Output {
    let prelude = "set -euo pipefail; . scripts/lib/common.sh; . scripts/provision.sh; ";
    Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .arg("provision-test")
        .args(args)
        .current_dir(root())
        .env("ROOT", root())
        .env_remove("ES_ZIP_SHA512")
        .env_remove("ES_VERSION")
        .output()
        .expect("running bash")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// A copy of `src` in `dir` with the byte in the middle flipped.
fn tampered_copy(src: &Path, dir: &Path) -> PathBuf {
    let mut bytes = std::fs::read(src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    let dst = dir.join(src.file_name().expect("a file name"));
    std::fs::write(&dst, bytes).expect("writing the tampered copy");
    dst
}

#[test]
fn the_pinned_elasticsearch_zip_passes_and_one_flipped_byte_is_refused_before_unpacking() {
    let version = stdout(&provision("echo \"$ES_VERSION\"", &[]));
    let pinned = stdout(&provision("echo \"$ES_ZIP_SHA512\"", &[]));
    assert_eq!(pinned.len(), 128, "a SHA-512 is pinned for ES {version}");
    let home = std::env::var("HOME").expect("HOME");
    let zip = PathBuf::from(home).join(format!(
        ".m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/{version}/elasticsearch-{version}.zip"
    ));
    assert!(
        zip.is_file(),
        "{} is missing: ./setup.sh test (or ./setup.sh dev) fetches it through Maven",
        zip.display()
    );
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dest = tmp.path().join("unpacked");
    std::fs::create_dir(&dest).unwrap();

    // the genuine artifact matches the pinned digest (checked, not unpacked: ~100 MB)
    let check = provision(
        "[ \"$(sha512sum \"$1\" | cut -d' ' -f1)\" = \"$ES_ZIP_SHA512\" ]",
        &[&zip],
    );
    assert!(
        check.status.success(),
        "the cached zip has the pinned SHA-512"
    );

    let bad = tampered_copy(&zip, tmp.path());
    let out = provision(
        "unpack_verified_zip \"$1\" \"$ES_ZIP_SHA512\" \"$2\"",
        &[&bad, &dest],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a tampered zip is refused: {err}");
    assert!(err.contains("refusing"), "the refusal is said: {err}");
    assert_eq!(entries(&dest), 0, "nothing was unpacked");

    // ensure_elasticsearch gives the refusal as its verdict: die, exit code 1
    let out = provision(
        "unpack_verified_zip \"$1\" \"$ES_ZIP_SHA512\" \"$2\" || die \"not installed\"",
        &[&bad, &dest],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(entries(&dest), 0, "nothing was unpacked");
}

#[test]
fn a_zip_that_matches_its_digest_is_unpacked_and_a_flipped_byte_is_not() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let zip = tmp.path().join("small.zip");
    let made = Command::new("python3")
        .args(["-c", "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.writestr('small/hello.txt', 'hello ' * 1000)"])
        .arg(&zip)
        .status()
        .expect("python3");
    assert!(made.success());
    let sha = stdout(&provision("sha512sum \"$1\" | cut -d' ' -f1", &[&zip]));
    let dest = tmp.path().join("out");
    std::fs::create_dir(&dest).unwrap();
    let sub = tmp.path().join("tampered");
    std::fs::create_dir(&sub).unwrap();
    let bad = tampered_copy(&zip, &sub);

    let refused = provision(
        &format!("unpack_verified_zip \"$1\" {sha} \"$2\""),
        &[&bad, &dest],
    );
    assert!(!refused.status.success());
    assert_eq!(entries(&dest), 0, "nothing was unpacked");

    let ok = provision(
        &format!("unpack_verified_zip \"$1\" {sha} \"$2\""),
        &[&zip, &dest],
    );
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let text = std::fs::read_to_string(dest.join("small/hello.txt")).expect("unpacked");
    assert_eq!(text.len(), 6000);

    let empty = provision("unpack_verified_zip \"$1\" '' \"$2\"", &[&zip, &dest]);
    assert!(!empty.status.success(), "no pinned digest, no unpacking");
}
