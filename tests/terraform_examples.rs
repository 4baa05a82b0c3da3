//! The Terraform examples in `terraform-examples/` against the tool itself: the lifecycle rules
//! the examples install are the rules `seatable-backup retention apply` writes
//! (`retention::wanted_rules`), the config they print loads with the tool's own parser, and the
//! IAM policies grant each role what its commands need and no more.
//!
//! Needs the `terraform` binary (on PATH, or named by `TERRAFORM`); without it these tests FAIL.
//! The provider-less modules are evaluated with `terraform console`, which needs no
//! `terraform init` and no network. The aws example is also planned offline when a local copy
//! of the hashicorp/aws provider is at hand (`SEATABLE_BACKUP_TF_PLUGIN_DIR`, else
//! `/opt/tf-plugins`). Every run works on a copy in a temporary directory: nothing is written
//! inside the repository.

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{json, Value};
use tempfile::TempDir;

use seatable_backup::config::{Config, Destination, RetentionConfig};
use seatable_backup::retention::wanted_rules;
use seatable_backup::store::LifecycleRule;
use seatable_backup::store::LockMode;

// ---------------------------------------------------------------------------------------------
// Running terraform

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("terraform-examples")
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// The terraform binary: `TERRAFORM`, else the first on PATH, else /usr/local/bin/terraform.
/// Missing, the test fails: these checks are the only proof that the examples match the tool.
fn terraform() -> PathBuf {
    if let Some(p) = std::env::var_os("TERRAFORM").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(is_executable(&p), "TERRAFORM={} is not an executable file", p.display());
        return p;
    }
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).map(|d| d.join("terraform")).find(|p| is_executable(p)));
    if let Some(p) = on_path.flatten() {
        return p;
    }
    let fallback = PathBuf::from("/usr/local/bin/terraform");
    if is_executable(&fallback) {
        return fallback;
    }
    panic!(
        "the `terraform` binary was not found (not on PATH, not at /usr/local/bin/terraform, TERRAFORM not set). \
         These tests check the Terraform examples in terraform-examples/ against the tool and need Terraform >= 1.3: \
         install it, or set TERRAFORM=/path/to/terraform."
    );
}

/// Runs terraform in `dir`, with `stdin` fed to it, in a clean, non-interactive environment.
fn tf(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(terraform());
    cmd.args(args)
        .current_dir(dir)
        .env("TF_IN_AUTOMATION", "1")
        .env("CHECKPOINT_DISABLE", "1")
        .env("TF_INPUT", "0")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Nothing from the caller's environment may change what the examples evaluate to.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("TF_VAR_") || k.starts_with("TF_CLI_ARGS") || k == "TF_DATA_DIR" || k == "TF_WORKSPACE" {
            cmd.env_remove(&k);
        }
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("starting terraform {args:?}: {e}"));
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("writing to terraform's stdin");
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("running terraform {args:?}: {e}"))
}

fn describe(out: &Output) -> String {
    format!(
        "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn tf_ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let out = tf(dir, args, stdin);
    assert!(out.status.success(), "terraform {args:?} in {} failed: {}", dir.display(), describe(&out));
    out
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    for entry in fs::read_dir(from).unwrap_or_else(|e| panic!("{}: {e}", from.display())) {
        let entry = entry.expect("directory entry");
        let name = entry.file_name();
        let name_s = name.to_string_lossy();
        // What a user's `terraform init`/`apply` may have left in a working copy.
        if name_s == ".terraform" || name_s == ".terraform.lock.hcl" || name_s.contains(".tfstate") {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&src, &dst);
        } else {
            fs::copy(&src, &dst).unwrap_or_else(|e| panic!("copying {}: {e}", src.display()));
        }
    }
}

/// A temporary directory holding copies of these subdirectories of terraform-examples/ (side by
/// side, so `../lifecycle-rules` and the like resolve as in the repository).
fn copy_examples(dirs: &[&str]) -> TempDir {
    let tmp = tempfile::Builder::new().prefix("tf-examples-").tempdir().expect("tempdir");
    for d in dirs {
        copy_dir(&examples_dir().join(d), &tmp.path().join(d));
    }
    tmp
}

/// Turns terraform console's display of a string (an HCL quoted string) back into the string.
fn hcl_string(line: &str) -> String {
    let s: String = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("terraform console did not print a quoted string ({e}): {line}"));
    // The two escapes of HCL templates that JSON does not have.
    s.replace("$${", "${").replace("%%{", "%{")
}

/// Evaluates `jsonencode(expr)` with `terraform console` in `dir` and returns the value.
fn console(dir: &Path, vars: &[(&str, &str)], expr: &str) -> Value {
    let mut args = vec!["console".to_string()];
    for (k, v) in vars {
        args.push(format!("-var={k}={v}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = tf_ok(dir, &args, Some(&format!("jsonencode({expr})\n")));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.starts_with('"'))
        .unwrap_or_else(|| panic!("no value in terraform console's output: {}", describe(&out)));
    let text = hcl_string(line);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("jsonencode({expr}) gave no JSON ({e}): {text}"))
}

fn retention(daily: u32, weekly: u32, monthly: u32) -> RetentionConfig {
    RetentionConfig { daily, weekly, monthly, ..Default::default() }
}

fn keep_days_hcl(r: &RetentionConfig) -> String {
    format!("{{ daily = {}, weekly = {}, monthly = {} }}", r.daily, r.weekly, r.monthly)
}

// ---------------------------------------------------------------------------------------------
// Formatting and layout

#[test]
fn terraform_fmt_is_clean() {
    let dir = examples_dir();
    let out = tf(&dir, &["fmt", "-check", "-recursive", "-diff", "-no-color"], None);
    assert!(
        out.status.success(),
        "`terraform fmt -check -recursive -diff` found unformatted files in terraform-examples/ \
         (run `terraform fmt -recursive terraform-examples`): {}",
        describe(&out)
    );
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The text of the block that starts with `header` (e.g. `module "lifecycle_rules"`), braces
/// included, from all the .tf files of an example.
fn block(example: &str, header: &str) -> String {
    let dir = examples_dir().join(example);
    let mut found = Vec::new();
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    names.sort();
    for p in names {
        let text = read(&p);
        let mut from = 0;
        while let Some(at) = text[from..].find(header) {
            let start = from + at;
            let open = start + text[start..].find('{').expect("block without `{`");
            let mut depth = 0usize;
            let mut end = open;
            for (i, c) in text[open..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = open + i + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
            found.push(text[start..end].to_string());
            from = end;
        }
    }
    assert_eq!(found.len(), 1, "expected exactly one `{header}` block in terraform-examples/{example}");
    found.pop().unwrap()
}

/// `a   =   b` -> `a = b`, for text checks that do not care about alignment.
fn squeeze(s: &str) -> String {
    s.lines().map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect::<Vec<_>>().join("\n")
}

fn has_line(block: &str, line: &str) -> bool {
    squeeze(block).lines().any(|l| l == line)
}

#[test]
fn examples_take_rules_policies_and_config_from_the_shared_modules() {
    for example in ["aws", "minio"] {
        for (module, source) in [
            ("lifecycle_rules", "../lifecycle-rules"),
            ("access_policies", "../access-policies"),
            ("config_toml", "../config-toml"),
        ] {
            let b = block(example, &format!("module \"{module}\""));
            assert!(
                has_line(&b, &format!("source = \"{source}\"")),
                "{example}: module \"{module}\" must have source = \"{source}\":\n{b}"
            );
        }
    }

    // AWS: versioned bucket, so the module is asked for the versioned rule set; the lifecycle
    // configuration is made of the module's rules and of nothing else.
    let m = block("aws", "module \"lifecycle_rules\"");
    assert!(has_line(&m, "versioned = true"), "aws: the bucket is versioned, the module must be told:\n{m}");
    let lc = block("aws", "resource \"aws_s3_bucket_lifecycle_configuration\"");
    assert!(has_line(&lc, "dynamic \"rule\" {"), "aws: the lifecycle rules must be a dynamic block:\n{lc}");
    assert!(
        has_line(&lc, "for_each = module.lifecycle_rules.rules"),
        "aws: the lifecycle configuration must iterate over module.lifecycle_rules.rules:\n{lc}"
    );
    assert!(!has_line(&lc, "rule {"), "aws: no hand-written rule in the lifecycle configuration:\n{lc}");
    let versioning = block("aws", "resource \"aws_s3_bucket_versioning\"");
    assert!(has_line(&versioning, "status = \"Enabled\""), "aws: versioning must be enabled:\n{versioning}");

    // MinIO: the ILM rules are the module's, in MinIO's form.
    let m = block("minio", "module \"lifecycle_rules\"");
    assert!(
        has_line(&m, "versioned = local.versioned"),
        "minio: the module must know whether the bucket is versioned:\n{m}"
    );
    let ilm = block("minio", "resource \"minio_ilm_policy\"");
    assert!(has_line(&ilm, "dynamic \"rule\" {"), "minio: the ILM rules must be a dynamic block:\n{ilm}");
    assert!(
        has_line(&ilm, "for_each = module.lifecycle_rules.minio_rules"),
        "minio: the ILM policy must iterate over module.lifecycle_rules.minio_rules:\n{ilm}"
    );
    assert!(!has_line(&ilm, "rule {"), "minio: no hand-written rule in the ILM policy:\n{ilm}");

    // The IAM policies are the shared module's documents.
    for (example, resource) in [("aws", "aws_iam_policy"), ("minio", "minio_iam_policy")] {
        let p = block(example, &format!("resource \"{resource}\""));
        assert!(
            has_line(&p, "policy = module.access_policies.policies[each.key]"),
            "{example}: the IAM policies must come from module.access_policies:\n{p}"
        );
    }
    for example in ["aws", "minio"] {
        let o = block(example, "output \"config_toml\"");
        assert!(
            has_line(&o, "value = module.config_toml.text"),
            "{example}: config_toml must be the module's text:\n{o}"
        );
    }
}

/// Names declared as `kind "NAME"` in the example's .tf files.
fn declared(example: &str, kind: &str) -> BTreeSet<String> {
    let dir = examples_dir().join(example);
    let mut names = BTreeSet::new();
    for e in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "tf") {
            for line in read(&p).lines() {
                if let Some(rest) = line.strip_prefix(&format!("{kind} \"")) {
                    names.insert(rest.split('"').next().unwrap_or_default().to_string());
                }
            }
        }
    }
    names
}

#[test]
fn example_readmes_list_every_variable_and_output() {
    assert!(examples_dir().join("README.md").is_file(), "terraform-examples/README.md is missing");
    for example in ["aws", "minio", "lifecycle-rules", "access-policies", "config-toml"] {
        let readme_path = examples_dir().join(example).join("README.md");
        if !readme_path.is_file() {
            assert!(!["aws", "minio"].contains(&example), "terraform-examples/{example}/README.md is missing");
            continue;
        }
        let readme = read(&readme_path);
        for kind in ["variable", "output"] {
            let names = declared(example, kind);
            assert!(!names.is_empty() || kind == "output", "{example}: no {kind} found");
            for name in names {
                assert!(
                    readme.contains(&format!("`{name}`")),
                    "terraform-examples/{example}/README.md does not list {kind} `{name}`"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// lifecycle-rules: the same rules as the tool

/// What the MinIO example makes of the tool's rules: `minio_ilm_policy` rules, without those it
/// cannot hold (AbortIncompleteMultipartUpload alone).
fn minio_form(rules: &[LifecycleRule]) -> Value {
    let mut out = Vec::new();
    for r in rules {
        assert!(r.other.is_empty(), "the tool's own rules hold nothing else: {r:?}");
        let expressible = r.expiration_days.is_some() || r.expired_object_delete_marker || r.noncurrent_days.is_some();
        if !expressible {
            assert!(r.abort_incomplete_days.is_some(), "a rule with no action at all: {r:?}");
            continue;
        }
        let expiration = match (r.expiration_days, r.expired_object_delete_marker) {
            (Some(d), false) => json!(format!("{d}d")),
            (None, true) => json!("DeleteMarker"),
            (None, false) => Value::Null,
            (Some(_), true) => {
                panic!("minio_ilm_policy cannot hold both an expiration and the delete-marker flag: {r:?}")
            }
        };
        out.push(json!({
            "id": r.id,
            "filter": r.prefix,
            "expiration": expiration,
            "noncurrent_expiration_days": r.noncurrent_days.map(|d| format!("{d}d")),
        }));
    }
    Value::Array(out)
}

/// Terraform variables, and what the tool is given for the same bucket.
struct RulesCase {
    vars: Vec<(&'static str, String)>,
    prefix: &'static str,
    r: RetentionConfig,
    versioned: bool,
}

#[test]
fn lifecycle_rules_module_equals_the_tools_rules() {
    let tmp = copy_examples(&["lifecycle-rules"]);
    let dir = tmp.path().join("lifecycle-rules");
    let case = |vars: &[(&'static str, &str)], prefix: &'static str, r: RetentionConfig, versioned: bool| RulesCase {
        vars: vars.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        prefix,
        r,
        versioned,
    };
    let keep = keep_days_hcl(&retention(3, 14, 90));
    let cases = [
        case(&[], "seatable", RetentionConfig::default(), false),
        case(&[("prefix", "backups/st1"), ("keep_days", &keep)], "backups/st1", retention(3, 14, 90), false),
        case(&[("versioned", "true")], "seatable", RetentionConfig::default(), true),
        case(&[("prefix", "")], "", RetentionConfig::default(), false),
        case(
            &[("prefix", ""), ("versioned", "true"), ("keep_days", "{ weekly = 60 }")],
            "",
            RetentionConfig { weekly: 60, ..Default::default() },
            true,
        ),
        // The tool drops slashes at either end of storage.prefix; so does the module.
        case(&[("prefix", "/a/b/"), ("versioned", "true")], "a/b", RetentionConfig::default(), true),
    ];
    for RulesCase { vars, prefix, r, versioned } in cases {
        let vars: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let got = console(
            &dir,
            &vars,
            "{ rules = local.rules, minio_rules = local.minio_rules, id_prefix = local.id_prefix }",
        );
        let want = wanted_rules(prefix, &r, versioned);
        let want_json = serde_json::to_value(&want).expect("rules as JSON");
        assert_eq!(
            got["rules"], want_json,
            "lifecycle-rules with {vars:?} differs from wanted_rules({prefix:?}, {r:?}, {versioned})\n\
             terraform: {}\ntool:      {}",
            got["rules"], want_json
        );
        assert_eq!(got["minio_rules"], minio_form(&want), "minio_rules with {vars:?}");
        assert_eq!(
            got["id_prefix"],
            json!(seatable_backup::retention::our_id_prefix(prefix)),
            "id_prefix with {vars:?}"
        );
        // The abort-incomplete-uploads rule is the only one MinIO's resource leaves out.
        let minio_ids: Vec<&str> =
            got["minio_rules"].as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap()).collect();
        let dropped: Vec<&LifecycleRule> = want.iter().filter(|r| !minio_ids.contains(&r.id.as_str())).collect();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(dropped[0].id.ends_with(":abort-incomplete-uploads"), "{dropped:?}");
    }
}

#[test]
fn lifecycle_rules_module_rejects_what_the_tool_rejects() {
    let tmp = copy_examples(&["lifecycle-rules"]);
    let dir = tmp.path().join("lifecycle-rules");
    for (k, v) in [
        ("prefix", "a/../b"),
        ("prefix", "with space"),
        ("keep_days", "{ daily = 0 }"),
        ("keep_days", "{ weekly = 1.5 }"),
        ("keep_days", "{ monthly = 36501 }"),
    ] {
        let var = format!("-var={k}={v}");
        let out = tf(&dir, &["console", "-no-color", &var], Some("jsonencode(local.rules)\n"));
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            !out.status.success() && all.contains("Invalid value for variable"),
            "{k} = {v} should be rejected by the module's validation: {}",
            describe(&out)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// access-policies: each role gets what its commands need, and no more

type Grants = BTreeSet<(String, String)>;

/// (action, resource) pairs a policy document allows; checks the document's shape on the way.
fn grants(doc: &str) -> Grants {
    let v: Value = serde_json::from_str(doc).unwrap_or_else(|e| panic!("policy is not JSON ({e}): {doc}"));
    assert_eq!(v["Version"], "2012-10-17", "{doc}");
    let mut out = Grants::new();
    for st in v["Statement"].as_array().expect("Statement list") {
        assert_eq!(st["Effect"], "Allow", "{st}");
        assert!(
            st.get("Principal").is_none() && st.get("NotAction").is_none() && st.get("NotResource").is_none(),
            "{st}"
        );
        assert!(st.get("Condition").is_none(), "no condition expected (the preflight lists without a prefix): {st}");
        let list = |x: &Value| -> Vec<String> {
            match x {
                Value::String(s) => vec![s.clone()],
                Value::Array(a) => a.iter().map(|s| s.as_str().expect("string").to_string()).collect(),
                other => panic!("unexpected {other}"),
            }
        };
        for a in list(&st["Action"]) {
            assert!(!a.contains('*'), "no wildcard action: {a}");
            for r in list(&st["Resource"]) {
                assert!(out.insert((a.clone(), r)), "granted twice: {a}");
            }
        }
    }
    out
}

fn expect(bucket: &[&str], objects: &[&str], bucket_arn: &str, objects_arn: &str) -> Grants {
    let mut g = Grants::new();
    for a in bucket {
        g.insert((a.to_string(), bucket_arn.to_string()));
    }
    for a in objects {
        g.insert((a.to_string(), objects_arn.to_string()));
    }
    g
}

#[test]
fn access_policies_grant_each_role_what_it_needs_and_no_more() {
    let tmp = copy_examples(&["access-policies"]);
    let dir = tmp.path().join("access-policies");
    let bucket_arn = "arn:aws:s3:::my-seatable-backups";
    for (prefix, object_lock, objects_arn) in [
        ("seatable", false, "arn:aws:s3:::my-seatable-backups/seatable/*"),
        ("backups/st1", true, "arn:aws:s3:::my-seatable-backups/backups/st1/*"),
        ("", true, "arn:aws:s3:::my-seatable-backups/*"),
    ] {
        let lock = object_lock.to_string();
        let got = console(
            &dir,
            &[("bucket_arn", bucket_arn), ("prefix", prefix), ("object_lock", &lock)],
            "{ policies = local.policies, objects_arn = local.objects_arn }",
        );
        assert_eq!(got["objects_arn"], objects_arn);
        let policy =
            |role: &str| grants(got["policies"][role].as_str().unwrap_or_else(|| panic!("no {role} policy: {got}")));

        let mut backup_objects = vec!["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"];
        if object_lock {
            backup_objects.push("s3:PutObjectRetention");
        }
        let backup = policy("backup");
        assert_eq!(
            backup,
            expect(
                &[
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketObjectLockConfiguration"
                ],
                &backup_objects,
                bucket_arn,
                objects_arn
            ),
            "backup role, prefix {prefix:?}, object lock {object_lock}"
        );
        // Retention is the server's job: the key that runs every night can never delete.
        assert!(backup.iter().all(|(a, _)| !a.contains("Delete") && !a.contains("Lifecycle") && !a.contains("Bypass")));

        assert_eq!(
            policy("restore"),
            expect(&["s3:ListBucket"], &["s3:GetObject"], bucket_arn, objects_arn),
            "restore role, prefix {prefix:?}"
        );

        assert_eq!(
            policy("admin"),
            expect(
                &[
                    "s3:ListBucket",
                    "s3:ListBucketMultipartUploads",
                    "s3:GetBucketVersioning",
                    "s3:GetBucketObjectLockConfiguration",
                    "s3:GetLifecycleConfiguration",
                    "s3:PutLifecycleConfiguration",
                ],
                &["s3:GetObject", "s3:DeleteObject", "s3:AbortMultipartUpload"],
                bucket_arn,
                objects_arn
            ),
            "admin role, prefix {prefix:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// config-toml: the printed config loads with the tool's parser and says what the bucket is

/// Loads the snippet the way the tool loads its config file.
fn load_config(text: &str) -> Config {
    for key in ["access_key_id", "secret_access_key"] {
        assert!(
            !text.lines().any(|l| l.trim_start().starts_with(key)),
            "no key may be printed into the config: {text}"
        );
    }
    let full = format!("host = \"tf-example-test\"\n{text}");
    Config::from_toml(&full, Path::new("/etc/seatable-backup/config.toml"))
        .unwrap_or_else(|e| panic!("the printed config does not load: {e}\n{text}"))
}

struct WantConfig<'a> {
    bucket: &'a str,
    prefix: &'a str,
    endpoint: Option<&'a str>,
    region: Option<&'a str>,
    path_style: bool,
    retention: RetentionConfig,
}

fn check_config(text: &str, want: &WantConfig) {
    let c = load_config(text);
    assert_eq!(c.storage.destination, Destination::S3 { bucket: want.bucket.into() }, "{text}");
    assert_eq!(c.storage.prefix, want.prefix, "{text}");
    assert_eq!(c.storage.s3.endpoint.as_deref(), want.endpoint, "{text}");
    assert_eq!(c.storage.s3.region.as_deref(), want.region, "{text}");
    assert_eq!(c.storage.s3.path_style, want.path_style, "{text}");
    let (got, r) = (&c.retention, &want.retention);
    assert_eq!((got.daily, got.weekly, got.monthly), (r.daily, r.weekly, r.monthly), "{text}");
    assert_eq!(got.object_lock, r.object_lock, "{text}");
    assert_eq!(got.object_lock_days, r.object_lock_days, "{text}");
    if r.object_lock {
        assert_eq!(got.object_lock_mode, r.object_lock_mode, "{text}");
    }
}

#[test]
fn config_toml_module_prints_a_config_the_tool_loads() {
    let tmp = copy_examples(&["config-toml"]);
    let dir = tmp.path().join("config-toml");

    // As the aws example calls it: no Object Lock.
    let text = console(&dir, &[("bucket", "my-seatable-backups"), ("region", "eu-central-1")], "local.text");
    check_config(
        text.as_str().unwrap(),
        &WantConfig {
            bucket: "my-seatable-backups",
            prefix: "seatable",
            endpoint: None,
            region: Some("eu-central-1"),
            path_style: false,
            retention: RetentionConfig { object_lock: false, ..Default::default() },
        },
    );

    // As the minio example calls it: endpoint, path style, Object Lock in compliance mode.
    let keep = keep_days_hcl(&retention(3, 14, 90));
    let text = console(
        &dir,
        &[
            ("bucket", "st-backups"),
            ("prefix", "backups/st1"),
            ("endpoint", "https://s3.example.com:9000"),
            ("region", "us-east-1"),
            ("path_style", "true"),
            ("keep_days", &keep),
            ("object_lock_days", "30"),
            ("object_lock_mode", "compliance"),
        ],
        "local.text",
    );
    check_config(
        text.as_str().unwrap(),
        &WantConfig {
            bucket: "st-backups",
            prefix: "backups/st1",
            endpoint: Some("https://s3.example.com:9000"),
            region: Some("us-east-1"),
            path_style: true,
            retention: RetentionConfig {
                object_lock: true,
                object_lock_mode: LockMode::Compliance,
                object_lock_days: Some(30),
                ..retention(3, 14, 90)
            },
        },
    );

    // The bucket's root.
    let text = console(&dir, &[("bucket", "b-root"), ("prefix", "")], "local.text");
    check_config(
        text.as_str().unwrap(),
        &WantConfig {
            bucket: "b-root",
            prefix: "",
            endpoint: None,
            region: None,
            path_style: false,
            retention: RetentionConfig { object_lock: false, ..Default::default() },
        },
    );
}

// ---------------------------------------------------------------------------------------------
// The aws example, planned offline with a local copy of the provider

/// A directory laid out for `terraform init -plugin-dir` that holds hashicorp/aws.
fn aws_plugin_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SEATABLE_BACKUP_TF_PLUGIN_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/opt/tf-plugins"));
    dir.join("registry.terraform.io/hashicorp/aws").is_dir().then_some(dir)
}

/// One planned lifecycle rule of aws_s3_bucket_lifecycle_configuration, in the tool's terms
/// (what the S3 store would read back from the bucket).
fn planned_rule_spec(r: &Value) -> Value {
    let first = |k: &str| r[k].as_array().and_then(|a| a.first()).cloned();
    let mut other = Vec::<String>::new();
    let filter = first("filter");
    let prefix = filter.as_ref().and_then(|f| f["prefix"].as_str()).unwrap_or("").to_string();
    if let Some(f) = &filter {
        if f["and"].as_array().is_some_and(|a| !a.is_empty()) {
            other.push("AND filter".into());
        }
        if f["tag"].as_array().is_some_and(|a| !a.is_empty()) {
            other.push("tag filter".into());
        }
        if !f["object_size_greater_than"].is_null() || !f["object_size_less_than"].is_null() {
            other.push("size filter".into());
        }
    }
    if r["prefix"].as_str().is_some_and(|p| !p.is_empty()) {
        other.push("legacy prefix".into());
    }
    let exp = first("expiration");
    // The provider plans `days = 0` for "not set" (S3 does not accept 0 days).
    let expiration_days = exp.as_ref().and_then(|e| e["days"].as_i64()).filter(|d| *d > 0);
    let marker = exp.as_ref().and_then(|e| e["expired_object_delete_marker"].as_bool()).unwrap_or(false);
    if exp.as_ref().is_some_and(|e| !e["date"].is_null()) {
        other.push("expiration at a fixed date".into());
    }
    for k in ["transition", "noncurrent_version_transition"] {
        if r[k].as_array().is_some_and(|a| !a.is_empty()) {
            other.push(k.into());
        }
    }
    let noncurrent = first("noncurrent_version_expiration");
    if noncurrent.as_ref().is_some_and(|n| !n["newer_noncurrent_versions"].is_null()) {
        other.push("newer noncurrent versions kept".into());
    }
    json!({
        "id": r["id"],
        "enabled": r["status"] == "Enabled",
        "prefix": prefix,
        "expiration_days": expiration_days,
        "expired_object_delete_marker": marker,
        "abort_incomplete_days": first("abort_incomplete_multipart_upload").map(|a| a["days_after_initiation"].clone()),
        "noncurrent_days": noncurrent.map(|n| n["noncurrent_days"].clone()),
        "other": other,
    })
}

fn planned<'a>(plan: &'a Value, address: &str) -> &'a Value {
    plan["resource_changes"]
        .as_array()
        .expect("resource_changes")
        .iter()
        .find(|rc| rc["address"] == address)
        .map(|rc| &rc["change"]["after"])
        .unwrap_or_else(|| panic!("{address} is not in the plan"))
}

#[test]
fn aws_example_plans_the_tools_rules_offline() {
    let Some(plugins) = aws_plugin_dir() else {
        // This machine kind ships the provider under /opt/tf-plugins: in CI its absence is a
        // failure, never a silent skip.
        assert!(
            std::env::var("CI").map(|v| v != "true").unwrap_or(true),
            "CI=true but no local hashicorp/aws provider under /opt/tf-plugins (or SEATABLE_BACKUP_TF_PLUGIN_DIR)"
        );
        eprintln!(
            "NOTE: no local hashicorp/aws provider (set SEATABLE_BACKUP_TF_PLUGIN_DIR to a `terraform init -plugin-dir` \
             directory, default /opt/tf-plugins): the offline plan of terraform-examples/aws is not checked; \
             the text checks and the module checks still are."
        );
        return;
    };
    let tmp = copy_examples(&["aws", "lifecycle-rules", "access-policies", "config-toml"]);
    let dir = tmp.path().join("aws");
    // Static fake keys and no account look-up: a plan of new resources then calls no AWS API.
    fs::write(
        dir.join("zz_offline_override.tf"),
        "provider \"aws\" {\n  access_key = \"AKIAOFFLINETEST\"\n  secret_key = \"offline\"\n  \
         skip_credentials_validation = true\n  skip_requesting_account_id = true\n  skip_metadata_api_check = true\n  \
         skip_region_validation = true\n}\n",
    )
    .expect("writing the override");
    let plugin_arg = format!("-plugin-dir={}", plugins.display());
    tf_ok(&dir, &["init", "-no-color", "-input=false", "-backend=false", &plugin_arg], None);
    tf_ok(&dir, &["validate", "-no-color"], None);

    // (variables, prefix, retention, object lock days)
    let cases: Vec<(Vec<String>, &str, RetentionConfig, u32)> = vec![
        (vec![], "seatable", RetentionConfig::default(), 0),
        (
            vec![
                "prefix=".into(),
                format!("keep_days={}", keep_days_hcl(&retention(3, 14, 90))),
                "object_lock_days=30".into(),
                "object_lock_mode=compliance".into(),
            ],
            "",
            retention(3, 14, 90),
            30,
        ),
    ];
    for (vars, prefix, r, lock_days) in cases {
        let mut args: Vec<String> =
            ["plan", "-no-color", "-input=false", "-refresh=false", "-lock=false", "-out=plan.bin"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        args.push("-var=bucket=my-seatable-backups".into());
        args.extend(vars.iter().map(|v| format!("-var={v}")));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        tf_ok(&dir, &args, None);
        let shown = tf_ok(&dir, &["show", "-json", "plan.bin"], None);
        let plan: Value = serde_json::from_slice(&shown.stdout).expect("plan JSON");

        // The lifecycle configuration holds exactly the tool's rules, in order (versioned bucket).
        let rules: Vec<Value> = planned(&plan, "aws_s3_bucket_lifecycle_configuration.backup")["rule"]
            .as_array()
            .expect("planned rules")
            .iter()
            .map(planned_rule_spec)
            .collect();
        let want = serde_json::to_value(wanted_rules(prefix, &r, true)).unwrap();
        assert_eq!(Value::Array(rules), want, "aws lifecycle rules with {vars:?}");

        // The bucket.
        assert_eq!(planned(&plan, "aws_s3_bucket.backup")["object_lock_enabled"], json!(lock_days > 0), "{vars:?}");
        assert_eq!(
            planned(&plan, "aws_s3_bucket_versioning.backup")["versioning_configuration"][0]["status"],
            "Enabled"
        );
        let pab = planned(&plan, "aws_s3_bucket_public_access_block.backup");
        for k in ["block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"] {
            assert_eq!(pab[k], true, "public access block {k}");
        }
        let sse = planned(&plan, "aws_s3_bucket_server_side_encryption_configuration.backup");
        assert_eq!(sse["rule"][0]["apply_server_side_encryption_by_default"][0]["sse_algorithm"], "AES256", "{sse}");

        // One user, key and policy per role.
        for role in ["backup", "restore", "admin"] {
            assert_eq!(planned(&plan, &format!("aws_iam_user.role[\"{role}\"]"))["name"], format!("seatable-{role}"));
            planned(&plan, &format!("aws_iam_access_key.role[\"{role}\"]"));
            planned(&plan, &format!("aws_iam_policy.role[\"{role}\"]"));
            planned(&plan, &format!("aws_iam_user_policy_attachment.role[\"{role}\"]"));
            let outputs = &plan["planned_values"]["outputs"];
            assert_eq!(
                outputs[format!("{role}_secret_access_key")]["sensitive"],
                true,
                "{role} secret must be sensitive"
            );
        }

        // The printed config loads and names this bucket.
        let text =
            plan["planned_values"]["outputs"]["config_toml"]["value"].as_str().expect("config_toml known at plan");
        check_config(
            text,
            &WantConfig {
                bucket: "my-seatable-backups",
                prefix,
                endpoint: None,
                region: Some("eu-central-1"),
                path_style: false,
                retention: RetentionConfig {
                    object_lock: lock_days > 0,
                    object_lock_mode: if lock_days > 0 { LockMode::Compliance } else { LockMode::Governance },
                    object_lock_days: (lock_days > 0).then_some(lock_days),
                    ..r
                },
            },
        );
    }
}
