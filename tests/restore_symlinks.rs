//! What the backup took, the restore restores with the defaults: a data directory holding
//! absolute, climbing, dangling and internal symlinks goes through `backup`, `verify` and
//! `restore` (no option) against Garage and comes back equal. And a forged set whose archive
//! writes a file THROUGH a symlink is refused by `verify` and by `restore` (exit 5), leaving
//! the live data directory as it was.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::tree::compare_trees;
use common::{assert_exit, env, stderr, stdout, unique_prefix, Run};
use seatable_backup::catalog::Manifest;
use seatable_backup::config::{Algorithm, CompressionConfig, RequestChecksums};
use sha2::Digest;
use tokio::io::{AsyncBufRead, AsyncReadExt};

struct Fixture {
    work: tempfile::TempDir,
    data: PathBuf,
    pristine: PathBuf,
    /// Outside the data directory: what some of its symlinks point at.
    outside: PathBuf,
    prefix: String,
}

impl Fixture {
    fn run(&self, args: &[&str]) -> Output {
        Run::garage(args, &self.prefix).env("SEATABLE_BACKUP_DATA_DIR", &self.data).output()
    }

    /// The live data directory is as at backup time, nothing outside it changed, and no
    /// staging directory is left.
    fn assert_live_as_backed_up(&self) {
        compare_trees(&self.pristine, &self.data, &[]).unwrap_or_else(|d| panic!("live data directory differs: {d}"));
        assert_eq!(std::fs::read(self.outside.join("target.txt")).unwrap(), b"outside the data directory\n");
        let mut names: Vec<_> = std::fs::read_dir(&self.outside)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["disk", "target.txt"], "something was written outside");
        assert_eq!(
            std::fs::read_dir(self.outside.join("disk")).unwrap().count(),
            1,
            "something was written into the other disk"
        );
        let staged: Vec<_> = std::fs::read_dir(self.work.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".restore-"))
            .collect();
        assert!(staged.is_empty(), "staging directories left: {staged:?}");
    }

    /// Replaces the data archive by `raw` (zstd-compressed here), with a manifest that
    /// describes the new object truthfully: sizes and hash match, the content is forged.
    async fn forge_data_archive(&self, raw: impl AsyncBufRead + Send + Unpin + 'static, raw_size: u64) {
        let store = env().s3(RequestChecksums::WhenSupported).await;
        let keys = common::keys_ending(store.as_ref(), &self.prefix, "/manifest.json").await;
        assert_eq!(keys.len(), 1, "{keys:?}");
        let mut m = Manifest::from_json(&store.get_object(&keys[0]).await.unwrap()).unwrap();
        let mut z = seatable_backup::codec::compress(
            raw,
            &CompressionConfig { algorithm: Algorithm::Zstd, level: 3, threads: 0, dump_threads: 0 },
        );
        let mut stored = Vec::new();
        z.read_to_end(&mut stored).await.unwrap();
        let o = m.objects.iter_mut().find(|o| o.component == "data").expect("a data object");
        assert!(o.key.ends_with(".tar.zst"), "{}", o.key);
        store.put_object(&o.key, stored.clone().into()).await.unwrap();
        o.stored_size = stored.len() as u64;
        o.raw_size = raw_size;
        o.sha256 = hex::encode(sha2::Sha256::digest(&stored));
        if o.chunk_size > 0 {
            o.chunk_sha256 =
                stored.chunks(o.chunk_size as usize).map(|c| hex::encode(sha2::Sha256::digest(c))).collect();
        }
        store.put_object(&keys[0], m.to_json().into()).await.unwrap();
    }
}

/// A SeaTable-like data directory with symlinks of every kind, backed up with `--only data`.
fn backed_up(name: &str) -> Fixture {
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("seatable");
    common::demo_data(&data, 1);
    let outside = work.path().join("outside");
    std::fs::create_dir_all(outside.join("disk")).unwrap();
    std::fs::write(outside.join("target.txt"), "outside the data directory\n").unwrap();
    std::fs::write(outside.join("disk/big.bin"), "on another disk\n").unwrap();

    // Absolute, into /etc; relative, climbing out of the data directory; dangling (relative
    // and absolute); to a directory inside; to a directory outside (another disk).
    symlink("/etc/hostname", data.join("conf/hostname")).unwrap();
    symlink("../../outside/target.txt", data.join("conf/climbing")).unwrap();
    symlink("does/not/exist", data.join("conf/dangling")).unwrap();
    symlink("/nonexistent/seatable-backup-test", data.join("conf/dangling-abs")).unwrap();
    symlink("conf", data.join("conf-link")).unwrap();
    symlink(outside.join("disk"), data.join("seafile-data-on-disk")).unwrap();
    std::fs::write(data.join("conf/plain.txt"), "an ordinary file\n").unwrap();

    let prefix = unique_prefix(name);
    let out = Run::garage(&["backup", "--only", "data"], &prefix).env("SEATABLE_BACKUP_DATA_DIR", &data).output();
    assert_exit(&out, 0);
    let pristine = work.path().join("pristine");
    let st = Command::new("cp").arg("-a").arg(&data).arg(&pristine).status().unwrap();
    assert!(st.success());
    Fixture { work, data, pristine, outside, prefix }
}

fn link(p: &Path) -> PathBuf {
    std::fs::read_link(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn symlinks_of_every_kind_restore_with_the_defaults() {
    let fx = backed_up("rsym");

    let out = fx.run(&["verify"]);
    assert_exit(&out, 0);
    let text = stdout(&out);
    assert!(text.contains("restorable with the defaults") && text.contains("symlinks"), "{text}");

    // Damage the live tree: links removed, retargeted, replaced by files; a file changed.
    std::fs::remove_file(fx.data.join("conf/hostname")).unwrap();
    std::fs::remove_file(fx.data.join("conf-link")).unwrap();
    std::fs::create_dir(fx.data.join("conf-link")).unwrap();
    std::fs::remove_file(fx.data.join("conf/climbing")).unwrap();
    symlink("/etc/passwd", fx.data.join("conf/climbing")).unwrap();
    std::fs::write(fx.data.join("conf/plain.txt"), "changed\n").unwrap();

    let out = fx.run(&["restore", "--only", "data"]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains("allow-external-symlinks"), "{}", stderr(&out));
    compare_trees(&fx.pristine, &fx.data, &[]).unwrap_or_else(|d| panic!("restored tree differs: {d}"));
    assert_eq!(link(&fx.data.join("conf/hostname")), Path::new("/etc/hostname"));
    assert_eq!(link(&fx.data.join("conf/climbing")), Path::new("../../outside/target.txt"));
    assert_eq!(link(&fx.data.join("conf/dangling")), Path::new("does/not/exist"));
    assert_eq!(link(&fx.data.join("conf/dangling-abs")), Path::new("/nonexistent/seatable-backup-test"));
    assert_eq!(link(&fx.data.join("conf-link")), Path::new("conf"));
    assert_eq!(link(&fx.data.join("seafile-data-on-disk")), fx.outside.join("disk"));
    assert_eq!(std::fs::read(fx.data.join("conf-link/plain.txt")).unwrap(), b"an ordinary file\n");
    fx.assert_live_as_backed_up();

    // The old flag is still accepted, as a no-op that says so.
    let out = fx.run(&["restore", "--only", "data", "--replace", "--allow-external-symlinks"]);
    assert_exit(&out, 0);
    assert!(stderr(&out).contains("`--allow-external-symlinks` is no longer needed"), "{}", stderr(&out));
    fx.assert_live_as_backed_up();
}

/// One member with a raw GNU header (names byte for byte).
fn member(b: &mut tar::Builder<Vec<u8>>, name: &str, kind: tar::EntryType, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(if kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(data.len() as u64);
    h.set_mtime(1_700_000_000);
    h.set_cksum();
    b.append(&h, data).unwrap();
}

#[tokio::test]
async fn an_archive_writing_through_a_symlink_is_refused_by_verify_and_restore() {
    let fx = backed_up("rsymf");
    let disk = fx.outside.join("disk").to_str().unwrap().to_owned();
    type Build = Box<dyn Fn(&mut tar::Builder<Vec<u8>>)>;
    let cases: Vec<(&str, Build)> = vec![
        (
            "through a symlink to a directory inside",
            Box::new(|b| {
                member(b, "./", tar::EntryType::Directory, "", b"");
                member(b, "conf/", tar::EntryType::Directory, "", b"");
                member(b, "conf/plain.txt", tar::EntryType::Regular, "", b"forged\n");
                member(b, "conf-link", tar::EntryType::Symlink, "conf", b"");
                member(b, "conf-link/plain.txt", tar::EntryType::Regular, "", b"forged\n");
            }),
        ),
        (
            "through an absolute symlink to another disk",
            Box::new(move |b| {
                member(b, "./", tar::EntryType::Directory, "", b"");
                member(b, "seafile-data-on-disk", tar::EntryType::Symlink, &disk, b"");
                member(b, "seafile-data-on-disk/evil.bin", tar::EntryType::Regular, "", b"forged\n");
            }),
        ),
    ];
    for (what, build) in cases {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let raw = b.into_inner().unwrap();
        let size = raw.len() as u64;
        fx.forge_data_archive(std::io::Cursor::new(raw), size).await;

        let out = fx.run(&["verify"]);
        assert_exit(&out, 5);
        let err = stderr(&out);
        assert!(err.contains("refused tar entry") && err.contains("refusing to write through it"), "{what}: {err}");
        fx.assert_live_as_backed_up();

        let out = fx.run(&["restore", "--only", "data"]);
        assert_exit(&out, 5);
        let err = stderr(&out);
        assert!(err.contains("refused tar entry") && err.contains("refusing to write through it"), "{what}: {err}");
        fx.assert_live_as_backed_up();
    }
}

/// The largest resident set of the children waited for so far, in KiB.
fn children_max_rss_kib() -> i64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a rusage struct.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) }, 0);
    usage.ru_maxrss
}

#[tokio::test]
async fn a_huge_long_name_is_refused_without_taking_the_memory() {
    let fx = backed_up("rsymh");
    // A GNU long-name record announcing 1 GiB (an object of a few dozen KB).
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(1 << 30);
    h.set_cksum();
    let raw = std::io::Cursor::new(h.as_bytes().to_vec()).chain(tokio::io::repeat(b'a').take(1 << 30));
    fx.forge_data_archive(tokio::io::BufReader::new(raw), 512 + (1 << 30)).await;

    for args in [&["verify"][..], &["restore", "--only", "data"][..]] {
        let out = fx.run(args);
        assert_exit(&out, 5);
        let err = stderr(&out);
        assert!(err.contains("GNU long-name record (type 'L') announces 1073741824 bytes"), "{args:?}: {err}");
        fx.assert_live_as_backed_up();
    }
    // Every child of this test process so far (the other tests' included) stayed far below
    // the 1 GiB that buffering the record would take.
    let rss = children_max_rss_kib();
    assert!(rss < 400 * 1024, "a child took {rss} KiB");
}
