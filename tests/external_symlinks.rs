//! Symlinks of the data directory that point outside it (an admin moved `seafile-data` to
//! another disk and left a link): `plan` and `backup` say loudly that what they point to is NOT
//! in the backup, the manifest records them, and `data.follow_symlinks` archives the content
//! under the link's name instead. Against the local-directory store (no service needed).

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{assert_exit, stderr, stdout, Run};
use seatable_backup::catalog::{self, Manifest};
use seatable_backup::config::Algorithm;
use seatable_backup::store::local::LocalStore;
use seatable_backup::store::Store;

struct Setup {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    outside: PathBuf,
    store_dir: PathBuf,
    root: PathBuf,
}

/// A data directory whose `seafile-data` was moved to `outside` (an absolute link), with a
/// relative link climbing out, an internal link, and inside the moved tree a link to `/etc`.
fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let (data, outside) = (tmp.path().join("seatable"), tmp.path().join("disk2"));
    let (store_dir, root) = (tmp.path().join("store"), tmp.path().join("empty-root"));
    for d in [&store_dir, &root, &data.join("conf"), &outside.join("seafile-data/storage/blocks")] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(data.join("conf/seafile.conf"), "[fileserver]\nport = 8082\n").unwrap();
    std::fs::write(outside.join("seafile-data/storage/blocks/b1"), "block one\n").unwrap();
    std::fs::write(outside.join("notes.txt"), "notes\n").unwrap();
    symlink("/etc/hostname", outside.join("seafile-data/hostname")).unwrap();
    symlink(outside.join("seafile-data"), data.join("seafile-data")).unwrap();
    symlink("../disk2/notes.txt", data.join("notes")).unwrap();
    symlink("conf/seafile.conf", data.join("conf-link")).unwrap();
    Setup { _tmp: tmp, data, outside, store_dir, root }
}

impl Setup {
    fn run(&self, args: &[&str]) -> Run {
        Run::new(args)
            .env("SEATABLE_BACKUP_DESTINATION", format!("file://{}", self.store_dir.display()))
            .env("SEATABLE_BACKUP_PREFIX", "backups")
            .env("SEATABLE_BACKUP_HOST_NAME", "linked")
            .env("SEATABLE_BACKUP_DATA_DIR", &self.data)
            .env("SEATABLE_BACKUP_SEATABLE_ROOT", &self.root)
            .env("SEATABLE_BACKUP_DB_ENABLED", "false")
            .env("SEATABLE_BACKUP_CONFIG_COMPONENT", "false")
            .env("SEATABLE_BACKUP_BIG_DATA_BACKUP", "false")
            .env("SEATABLE_BACKUP_DOCKER_HOST", "unix:///nonexistent/docker.sock")
    }

    fn store(&self) -> Arc<dyn Store> {
        Arc::new(LocalStore::new(self.store_dir.clone()))
    }

    fn line(&self, path: &str, target: &str) -> String {
        format!(
            "`{path}` -> `{target}`: a symlink; the content it points to is NOT in the backup (add it to data.follow_symlinks to archive it)"
        )
    }

    fn moved(&self) -> String {
        self.outside.join("seafile-data").display().to_string()
    }
}

type Member = (String, tar::EntryType, Option<String>, Vec<u8>);

/// The newest set's manifest (parsed and as stored) and its data archive's members.
async fn newest(store: &dyn Store) -> (Manifest, String, Vec<Member>) {
    let sets = catalog::list_sets(store, "backups").await.unwrap();
    let set = sets.last().expect("a set");
    let key = set.id().key("backups", catalog::MANIFEST);
    let raw = store.get_object(&key).await.unwrap();
    let manifest = Manifest::from_json(&raw).unwrap();
    let raw = String::from_utf8(raw.to_vec()).unwrap();
    let data = manifest.objects.iter().find(|o| o.component == "data").expect("a data object");
    let bytes = common::fetch_decompressed(store, &data.key, Algorithm::Zstd).await;
    let mut members = Vec::new();
    for entry in tar::Archive::new(&bytes[..]).entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let link = entry.link_name_bytes().map(|l| String::from_utf8_lossy(&l).into_owned());
        let kind = entry.header().entry_type();
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        members.push((name, kind, link, content));
    }
    (manifest, raw, members)
}

fn store_is_empty(dir: &Path) -> bool {
    walk(dir).is_empty()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn plan_names_each_symlink_whose_content_is_not_in_the_backup() {
    let s = setup();
    let out = s.run(&["plan"]).output();
    assert_exit(&out, 0);
    let text = stdout(&out);
    let not_held = text.split("it will NOT hold:").nth(1).unwrap().split("checks:").next().unwrap().to_string();
    assert!(not_held.contains(&s.line("seafile-data", &s.moved())), "{text}");
    assert!(not_held.contains(&s.line("notes", "../disk2/notes.txt")), "{text}");
    assert!(!not_held.contains("conf-link"), "an internal link is listed: {text}");
    // The link inside the moved tree is not seen: the walk does not go behind a link.
    assert!(!not_held.contains("hostname"), "{text}");

    let out = s.run(&["plan", "--json"]).env("SEATABLE_BACKUP_DATA_FOLLOW_SYMLINKS", "seafile-data").output();
    assert_exit(&out, 0);
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let not_held = plan["not_included"].to_string();
    assert!(!not_held.contains("`seafile-data` ->"), "{plan}");
    assert!(not_held.contains("`seafile-data/hostname` -> `/etc/hostname`: a symlink; the content"), "{plan}");
    let checks = plan["checks"].as_array().unwrap();
    let follow = checks.iter().find(|c| c["check"].as_str().unwrap().contains("data.follow_symlinks")).unwrap();
    assert_eq!(follow["ok"], true, "{plan}");

    for (bad, why) in [("conf", "is a directory, not a symlink"), ("no-such-link", "does not exist")] {
        let out = s.run(&["plan"]).env("SEATABLE_BACKUP_DATA_FOLLOW_SYMLINKS", bad).output();
        assert_exit(&out, 2);
        let text = stdout(&out);
        assert!(text.contains("[FAIL] symlinks to follow (`data.follow_symlinks`)"), "{text}");
        assert!(text.contains(&format!("`{bad}`")) && text.contains(why), "{text}");
    }
    assert!(store_is_empty(&s.store_dir));
}

#[tokio::test]
async fn backup_warns_records_and_follows_on_request() {
    let s = setup();
    let store = s.store();

    // A symlink to follow that is not one: refused before anything is written.
    let out = s.run(&["backup"]).env("SEATABLE_BACKUP_DATA_FOLLOW_SYMLINKS", "seafile-data,conf").output();
    assert_exit(&out, 2);
    assert!(stderr(&out).contains("`conf`") && stderr(&out).contains("not a symlink"), "{}", stderr(&out));
    assert!(store_is_empty(&s.store_dir), "{:?}", walk(&s.store_dir));

    // Default: the links are archived as links, and everyone is told.
    let out = s.run(&["backup"]).output();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("WARN") && err.contains(&s.line("seafile-data", &s.moved())), "{err}");
    assert!(err.contains(&s.line("notes", "../disk2/notes.txt")), "{err}");
    let summary = err.lines().find(|l| l.starts_with("Backup of host")).unwrap();
    assert!(summary.contains("2 symlinks in the data directory point outside it"), "{summary}");
    let (manifest, raw, members) = newest(store.as_ref()).await;
    assert!(raw.contains("\"external_symlinks_total\": 2"), "{raw}");
    let tar = manifest.objects.iter().find_map(|o| o.tar.as_ref()).unwrap();
    assert_eq!(tar.external_symlinks_total, 2);
    let listed: Vec<(&str, &str)> =
        tar.external_symlinks.iter().map(|l| (l.path.as_str(), l.target.as_str())).collect();
    let moved = s.moved();
    assert_eq!(listed, [("notes", "../disk2/notes.txt"), ("seafile-data", moved.as_str())]);
    let warned: Vec<&String> = manifest.warnings.iter().filter(|w| w.contains("point outside")).collect();
    assert_eq!(warned.len(), 1, "{:?}", manifest.warnings);
    assert!(warned[0].starts_with("2 symlink(s) in the data directory point outside it"), "{}", warned[0]);
    let kind = |n: &str| members.iter().find(|m| m.0 == n).map(|m| m.1);
    assert_eq!(kind("seafile-data"), Some(tar::EntryType::Symlink));
    assert!(!members.iter().any(|m| m.0.contains("blocks")));

    // Followed: the moved tree is in the archive under the link's name; the link inside it
    // stays a link and is the one reported now.
    let out = s.run(&["backup"]).env("SEATABLE_BACKUP_DATA_FOLLOW_SYMLINKS", "seafile-data,notes").output();
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains(&s.line("seafile-data/hostname", "/etc/hostname")), "{err}");
    assert!(!err.contains(&s.line("seafile-data", &s.moved())), "{err}");
    let (manifest, _, members) = newest(store.as_ref()).await;
    let tar = manifest.objects.iter().find_map(|o| o.tar.as_ref()).unwrap();
    assert_eq!(tar.external_symlinks_total, 1);
    let find = |n: &str| members.iter().find(|m| m.0 == n).unwrap_or_else(|| panic!("no {n}: {members:?}"));
    assert_eq!(find("seafile-data/").1, tar::EntryType::Directory);
    let block = find("seafile-data/storage/blocks/b1");
    assert_eq!((block.1, block.3.as_slice()), (tar::EntryType::Regular, &b"block one\n"[..]));
    let host = find("seafile-data/hostname");
    assert_eq!((host.1, host.2.as_deref()), (tar::EntryType::Symlink, Some("/etc/hostname")));
    let notes = find("notes");
    assert_eq!((notes.1, notes.3.as_slice()), (tar::EntryType::Regular, &b"notes\n"[..]));
    assert_eq!(find("conf-link").1, tar::EntryType::Symlink);
}
